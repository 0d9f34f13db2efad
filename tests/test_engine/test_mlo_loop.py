"""MLOTrainLoop: the three levels through the Runner, exact resume, the
labelled split and its before-training errors, 2-process gloo DDP.

Tiny 2-block ViTs on generated 16 px class folders (conftest).
"""
import json
import os
import os.path as osp
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import BaseDataset
from mmengine.hooks import Hook

from conftest import REPO, make_image_folder
from mlmask_mm.datasets import LabelledSplit, stratified_split
from mlmask_mm.engine.loops.mlo_loop import CyclingIterator
from mlmask_mm.registry import DATASETS

DEMO = osp.join(REPO, 'configs', 'mlo_mae', 'mlo-mae_vit-tiny-p4_demo.py')
IMG, PATCH, DIM = 16, 4, 32


def mlo_config(mae_root, labelled_root, work_dir, max_iters=3, n=1,
               batch=4, labelled_batch=2, deterministic=False, K=1,
               stage2_root=None):
    """The demo config shrunk to a 2-block ViT on 16 px images."""
    cfg = Config.fromfile(DEMO)
    cfg.work_dir = work_dir
    m = cfg.model
    m.backbone.arch = dict(embed_dims=DIM, num_layers=2, num_heads=2,
                           feedforward_channels=64)
    m.backbone.img_size, m.backbone.patch_size = IMG, PATCH
    m.neck.update(num_patches=(IMG // PATCH)**2, patch_size=PATCH,
                  embed_dim=DIM, decoder_embed_dim=DIM, decoder_depth=1,
                  decoder_num_heads=2)
    m.head.patch_size = PATCH
    m.masker.hidden_dims = 16
    m.downstream_head.update(num_classes=2, in_channels=DIM)
    m.hypergrad.unroll_steps = K
    resize = dict(type='Resize', scale=IMG)
    ds = cfg.train_dataloader.dataset
    ds.data_root = mae_root
    ds.serialize_data = False  # its gc.collect() costs ~1 s per dataset
    ds.pipeline = [ds.pipeline[0], resize, ds.pipeline[-1]] \
        if deterministic else [
            dict(t, scale=IMG) if t['type'] == 'RandomResizedCrop' else t
            for t in ds.pipeline]
    loop = cfg.train_cfg
    loop.max_iters = max_iters
    loop.masker_update_interval = n
    loop.labelled_split.dataset = dict(
        type='ImageFolder', data_root=labelled_root, with_label=True,
        serialize_data=False, pipeline=[
            dict(type='LoadImageFromFile'), resize,
            dict(type='PackInputs')])
    if stage2_root is None:
        cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    else:  # stage-II evaluation on other labelled folders
        cfg.val_dataloader.update(num_workers=0, persistent_workers=False,
                                  batch_size=4)
        cfg.val_dataloader.dataset = dict(loop.labelled_split.dataset,
                                          data_root=stage2_root)
        cfg.val_evaluator = dict(type='Accuracy', topk=(1, 2))
        loop.val_interval = 2
    for loader in (cfg.train_dataloader, loop.train_split_dataloader,
                   loop.val_split_dataloader):
        loader.update(num_workers=0, persistent_workers=False)
    cfg.train_dataloader.batch_size = batch
    loop.train_split_dataloader.batch_size = labelled_batch
    loop.val_split_dataloader.batch_size = labelled_batch
    schedule = [dict(type='CosineAnnealingLR', by_epoch=False, begin=0,
                     end=max_iters, eta_min=1e-5)]
    cfg.param_scheduler = dict(mae=schedule, head=schedule, masker=schedule)
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=max_iters, by_epoch=False)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.custom_hooks = []
    cfg.randomness = dict(seed=0, diff_rank_seed=False)
    return cfg


@pytest.fixture
def folders(tmp_path):
    """(unlabelled MAE images, labelled class folders): 8 + 2x5 images."""
    mae = make_image_folder(str(tmp_path / 'mae'), per_class=4, size=IMG)
    labelled = make_image_folder(str(tmp_path / 'labelled'), per_class=5,
                                 size=IMG, seed=1)
    return mae, labelled


@pytest.fixture(autouse=True)
def fast_runner(monkeypatch):
    """The config text (logged and saved in every checkpoint) without its
    ~1.5 s yapf formatting (the epoch-end sleep is off: conftest)."""
    monkeypatch.setattr(Config, 'pretty_text',
                        property(lambda self: repr(self._cfg_dict)))


class _Batches(Hook):
    """Image paths of the three batches of every outer iteration."""
    priority = 'LOWEST'

    def __init__(self):
        self.paths = {}

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        loop = runner.train_loop
        self.paths[runner.iter + 1] = (
            [s.img_path for s in data_batch['data_samples']],
            loop.train_batches.delivered, loop.val_batches.delivered,
            sorted(outputs))


class _Initial(Hook):
    """The model's state when training starts (weights initialised)."""
    priority = 'LOWEST'

    def before_train(self, runner):
        self.state = {k: v.clone()
                      for k, v in runner.model.state_dict().items()}


def _params(model, prefix):
    return {k: v.detach().clone() for k, v in model.named_parameters()
            if k.startswith(prefix)}


# ----------------------------------------------------------------- runner
def test_three_levels_update_through_the_runner(
        folders, tmp_path, build_runner):
    mae, labelled = folders
    cfg = mlo_config(mae, labelled, str(tmp_path / 'work'), max_iters=3, n=2)
    runner = build_runner(cfg, 'mlo_three_levels')
    model = runner.model
    before = {p: _params(model, p) for p in
              ('masker.', 'backbone.', 'neck.', 'downstream_head.')}
    batches = _Batches()
    runner.register_hook(batches)
    runner.train()
    for prefix, old in before.items():
        new = _params(model, prefix)
        changed = [k for k in old if not torch.equal(old[k], new[k])]
        assert changed, f'no parameter under {prefix} changed'
    # n = 2: the masker is updated at iterations 0 and 2 (1-based 1 and 3),
    # and only then is a level-3 batch read
    assert [batches.paths[i][2] for i in (1, 2, 3)] == [1, 1, 2]
    assert [batches.paths[i][1] for i in (1, 2, 3)] == [1, 2, 3]
    assert 'loss_val' in batches.paths[1][3]
    assert 'loss_val' not in batches.paths[2][3]
    # the logger saw every level's loss and the three learning rates
    log = open(next(
        osp.join(r, f) for r, _, fs in os.walk(str(tmp_path / 'work'))
        for f in fs if f.endswith('.log'))).read()
    for key in ('loss_mae', 'loss_head', 'loss_val', 'mae.lr', 'head.lr',
                'masker.lr'):
        assert key in log, key
    # the checkpoint has the three optimizers and scheduler lists
    ckpt = torch.load(str(tmp_path / 'work' / 'iter_3.pth'),
                      weights_only=True)
    assert set(ckpt['optimizer']) == {'mae', 'head', 'masker'}
    assert set(ckpt['param_schedulers']) == {'mae', 'head', 'masker'}
    # each optimizer holds exactly its part's parameters
    ow = runner.optim_wrapper
    owned = {k: {id(p) for g in ow[k].optimizer.param_groups
                 for p in g['params']} for k in ('mae', 'head', 'masker')}
    assert owned['masker'] == {id(p) for p in model.masker.parameters()}
    assert owned['head'] == {
        id(p) for p in model.downstream_head.parameters()}
    assert len(owned['mae']) + len(owned['head']) + len(owned['masker']) \
        == len([p for p in model.parameters() if p.requires_grad])
    # the split is recorded in the work dir
    split = json.load(open(tmp_path / 'work' / 'mlo_split' / 'split.json'))
    assert split['num_samples'] == dict(train=8, val=2)


@pytest.mark.parametrize('K', [1, 2])
def test_mae_steps_get_the_mae_batch_levels_2_3_the_labelled_parts(
        folders, tmp_path, build_runner, K):
    """outer_step receives, per outer iteration, the MAE dataloader's batch
    (split into K level-1 batches, together the batch the hooks see) for
    level 1, the level-2 part of the split for level 2 and the level-3
    part for level 3: no labelled image in an MAE step, no MAE image at
    levels 2/3."""
    mae, labelled = folders
    cfg = mlo_config(mae, labelled, str(tmp_path / 'work'), max_iters=2,
                     K=K)
    runner = build_runner(cfg, f'mlo_batches_{K}')
    model = runner.model
    seen = []
    original = model.outer_step

    def spy(mae_batch, train_batch, val_batch, **kwargs):
        parts = [mae_batch] if isinstance(mae_batch, dict) else mae_batch
        seen.append(dict(
            mae=[[osp.realpath(s.img_path) for s in b['data_samples']]
                 for b in parts],
            train=[osp.realpath(s.img_path)
                   for s in train_batch['data_samples']],
            val=[osp.realpath(s.img_path)
                 for s in val_batch['data_samples']]))
        return original(mae_batch, train_batch, val_batch, **kwargs)
    model.outer_step = spy
    hook = _Batches()
    runner.register_hook(hook)
    runner.train()
    loop = runner.train_loop
    split = {part: {osp.realpath(p) for p in getattr(
        loop, f'{part}_split_loader').dataset.file_paths()}
        for part in ('train', 'val')}
    mae_root = osp.realpath(mae) + os.sep
    assert len(seen) == 2
    for it, got in enumerate(seen, start=1):
        assert len(got['mae']) == K
        flat = [p for b in got['mae'] for p in b]
        assert all(p.startswith(mae_root) for p in flat), flat
        assert flat == [osp.realpath(p) for p in hook.paths[it][0]]
        assert len(flat) == 4 * K  # K batches of batch_size 4
        assert set(got['train']) <= split['train']
        assert set(got['val']) <= split['val']


# ---------------------------------------------------- stage-II evaluation
def test_stage2_evaluation_logged_checkpointed_and_reported(folders,
                                                            tmp_path, build_runner):
    """The level-2 head on held-out labelled images through mmengine's val
    loop: top-1/top-2 in the log at iterations 2 and 3 (val_interval 2 and
    the last), in the checkpoint of iteration 3, and in the closing
    report."""
    mae, labelled = folders
    heldout = make_image_folder(str(tmp_path / 'heldout'), per_class=3,
                                size=IMG, seed=9)
    work = tmp_path / 'work'
    cfg = mlo_config(mae, labelled, str(work), max_iters=3,
                     stage2_root=heldout)
    runner = build_runner(cfg, 'mlo_stage2')
    runner.train()
    log = open(next(
        osp.join(r, f) for r, _, fs in os.walk(str(work))
        for f in fs if f.endswith('.log'))).read()
    assert log.count('Iter(val) [2/2]    accuracy/top1') == 2
    assert 'accuracy/top1' in log and 'accuracy/top2' in log
    assert 'MLO-MAE stage-II evaluation' in log
    assert '  last, iteration 3: accuracy/top1' in log
    ckpt = torch.load(str(work / 'iter_3.pth'), weights_only=True)
    history = ckpt['message_hub']['runtime_info']['mlo_stage2']
    assert [h['iter'] for h in history] == [2, 3]
    # the head on the held-out images, recomputed: the checkpoint's number
    model = runner.model
    model.eval()
    correct = 0
    for batch in runner.val_dataloader:
        data = model.data_preprocessor(batch, False)
        out = model(**data, mode='predict')
        correct += sum(int(o.pred_label == o.gt_label) for o in out)
    assert history[-1]['accuracy/top1'] == pytest.approx(100 * correct / 6)
    assert history[-1]['accuracy/top2'] == 100.0  # two classes


# ----------------------------------------------------------------- resume
@pytest.mark.parametrize('by_epoch', [False, True], ids=['iters', 'epochs'])
def test_resume_equals_uninterrupted_run(
        folders, tmp_path, by_epoch, build_runner):
    """A run resumed from the checkpoint of iteration C of an uninterrupted
    run ends identical to it: parameters, the three optimizers' states and
    learning rates, the batches of all three dataloaders.

    MAE: 8 images, batch 4 (iters: 2 unrolled steps, i.e. 2 batches per
    outer iteration); level 2: 8 images, batch 2; level 3: 2 images, batch
    2: every loader wraps around.  4 outer iterations, masker update every
    n = 3 (iterations 0 and 3).  Iteration-based: C = 2, the resumed run
    starts in the masker's off phase.  Epoch-based (2 epochs of 2
    iterations): C = 3, in the middle of the second epoch.
    """
    mae, labelled = folders
    N, C = 4, (3 if by_epoch else 2)

    def cfg(work):
        c = mlo_config(mae, labelled, str(tmp_path / work), max_iters=N, n=3,
                       K=1 if by_epoch else 2)
        c.default_hooks.checkpoint = dict(
            type='CheckpointHook', interval=C, by_epoch=False)
        if by_epoch:
            c.train_cfg.pop('max_iters')
            c.train_cfg.max_epochs = 2
            schedule = [dict(type='CosineAnnealingLR', by_epoch=True,
                             begin=0, end=2, convert_to_iter_based=True)]
            c.param_scheduler = dict(mae=schedule, head=schedule,
                                     masker=schedule)
        return c

    full = build_runner(cfg('full'), f'mlo_full_{by_epoch}')
    full_batches = _Batches()
    full.register_hook(full_batches)
    full.train()
    assert full.iter == N and full.epoch == (2 if by_epoch else 0)
    assert [full_batches.paths[i][2] for i in range(1, N + 1)] == [1, 1, 1, 2]

    c = cfg('resumed')
    c.resume = True
    c.load_from = str(tmp_path / 'full' / f'iter_{C}.pth')
    resumed = build_runner(c, f'mlo_resumed_{by_epoch}')
    resumed_batches = _Batches()
    resumed.register_hook(resumed_batches)
    resumed.train()

    assert resumed.iter == N and resumed.epoch == full.epoch
    assert sorted(resumed_batches.paths) == list(range(C + 1, N + 1))
    for i in range(C + 1, N + 1):  # same images, same loader positions
        assert resumed_batches.paths[i] == full_batches.paths[i], i
    expected, got = full.model.state_dict(), resumed.model.state_dict()
    different = [k for k in expected if not torch.equal(expected[k], got[k])]
    assert not different, f'resumed run differs in {different}'
    for key in ('mae', 'head', 'masker'):
        a = full.optim_wrapper[key]
        b = resumed.optim_wrapper[key]
        assert a.get_lr() == b.get_lr()
        sa, sb = a.optimizer.state_dict(), b.optimizer.state_dict()
        assert sa['state'].keys() == sb['state'].keys()
        for i in sa['state']:
            for name in ('step', 'exp_avg', 'exp_avg_sq'):
                assert torch.equal(torch.as_tensor(sa['state'][i][name]),
                                   torch.as_tensor(sb['state'][i][name]))


def test_cycling_iterator_skip_equals_reading():
    from torch.utils.data import DataLoader
    from mmengine.dataset import DefaultSampler
    data = list(range(7))

    def loader():
        return DataLoader(data, batch_size=2, sampler=DefaultSampler(
            data, shuffle=True, seed=3))

    read = CyclingIterator(loader())
    seen = [next(read).tolist() for _ in range(11)]
    assert seen[0] != seen[4]  # 4 batches per pass, reshuffled
    for n in (0, 3, 4, 8, 9):
        skipped = CyclingIterator(loader())
        skipped.skip(n)
        assert [next(skipped).tolist() for _ in range(11 - n)] == seen[n:]
        assert skipped.delivered == 11
    from mmengine.dataset import InfiniteSampler

    def endless():  # the sampler holds the position: one per run
        return DataLoader(data, batch_size=2, sampler=InfiniteSampler(
            data, shuffle=True, seed=3))

    it = CyclingIterator(endless())
    seen = [next(it).tolist() for _ in range(9)]
    skipped = CyclingIterator(endless())
    skipped.skip(5)
    assert [next(skipped).tolist() for _ in range(4)] == seen[5:]


# ------------------------------------------------------------ distributed
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_processes_equal_one_on_the_concatenated_batch(
        folders, tmp_path, build_runner):
    """tools/dist_train.sh with 2 CPU processes (batch b each) ends with the
    parameters of one process on batches of 2b.  With a deterministic
    pipeline and DefaultSampler, rank r reads items r, r+2, ... of the same
    shuffled order, so the two ranks' batches together are the single
    process's batch; the loss is a per-sample mean, so the averaged
    gradients equal the single process's."""
    mae, labelled = folders
    N = 3

    def cfg(work, world):
        c = mlo_config(mae, labelled, str(tmp_path / work), max_iters=N,
                       n=1, batch=4 // world, labelled_batch=2 // world,
                       deterministic=True)
        # SGD: updates proportional to the gradients (Adam's first steps
        # are nearly sign(g), blind to a missing average)
        for part in ('mae', 'head', 'masker'):
            c.optim_wrapper[part].optimizer = dict(
                type='SGD', lr=0.5, weight_decay=0.)
        return c

    single = build_runner(cfg('single', 1), 'mlo_single')
    start = _Initial()
    single.register_hook(start)
    single.train()

    dist_cfg = cfg('dist', 2)
    config_file = str(tmp_path / 'dist_config.json')
    dist_cfg.dump(config_file)
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(_free_port()),
               OMP_NUM_THREADS='1')
    env.pop('NNODES', None)
    env.pop('NODE_RANK', None)
    proc = subprocess.run(
        ['bash', osp.join('tools', 'dist_train.sh'), config_file, '2'],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    assert 'Distributed training: True' in output

    import mlmask_mm  # noqa: F401  (weights-only loading)
    got = torch.load(str(tmp_path / 'dist' / f'iter_{N}.pth'),
                     weights_only=True)['state_dict']
    expected = single.model.state_dict()
    init = start.state
    assert got.keys() == expected.keys()
    # each tensor's training update, relative to its size (float32 sums in
    # another order differ a little)
    for part in ('masker.', 'backbone.', 'neck.', 'downstream_head.'):
        moved = [k for k in expected if k.startswith(part)
                 and not torch.equal(init[k], expected[k])]
        assert moved, f'training did not change {part}'
        for k in moved:
            update = expected[k] - init[k]
            error = (got[k] - expected[k]).norm() / update.norm()
            assert error < 1e-3, f'{k}: relative error {error:.2e}'


# ------------------------------------------------------- labelled split
def test_stratified_split_is_stratified_seeded_and_disjoint():
    labels = [0] * 10 + [1] * 5 + [2] * 3
    a = stratified_split(labels, 0.8, seed=0)
    assert a == stratified_split(labels, 0.8, seed=0)  # seeded
    assert a != stratified_split(labels, 0.8, seed=1)
    assert not set(a['train']) & set(a['val'])  # disjoint
    assert sorted(a['train'] + a['val']) == list(range(len(labels)))
    per_class = {p: np.bincount([labels[i] for i in a[p]], minlength=3)
                 for p in a}
    # round(0.8 n_c) per class, at least one of each class in each part
    assert per_class['train'].tolist() == [8, 4, 2]
    assert per_class['val'].tolist() == [2, 1, 1]
    with pytest.raises(ValueError, match='ratio'):
        stratified_split(labels, 1.0, seed=0)


def test_labelled_split_parts_and_record(tmp_path):
    root = make_image_folder(str(tmp_path / 'labelled'),
                             classes=('a', 'b', 'c'), per_class=5, size=IMG)
    folder = dict(type='ImageFolder', data_root=root, with_label=True,
                  pipeline=[])
    train = LabelledSplit(folder, part='train', ratio=0.6, seed=4)
    val = LabelledSplit(folder, part='val', ratio=0.6, seed=4)
    assert (len(train), len(val)) == (9, 6)
    assert not set(train.file_paths()) & set(val.file_paths())
    assert len(set(train.file_paths()) | set(val.file_paths())) == 15
    assert val[0]['img_path'] == val.file_paths()[0]
    out = train.save(str(tmp_path / 'split'))
    lines = open(osp.join(out, 'val.txt')).read().split('\n')[:-1]
    assert [f'{osp.relpath(p, root)} {train.labels[i]}' for p, i in zip(
        val.file_paths(), val.indices)] == lines
    info = json.load(open(osp.join(out, 'split.json')))
    assert (info['ratio'], info['seed']) == (0.6, 4)
    assert info['per_class']['train'] == {'0': 3, '1': 3, '2': 3}


# ------------------------------------------------ before-training errors
def test_missing_labelled_split_is_one_clear_error(
        folders, tmp_path, build_runner):
    mae, labelled = folders
    cfg = mlo_config(mae, labelled, str(tmp_path / 'work'))
    cfg.train_cfg.pop('labelled_split')
    with pytest.raises(ValueError, match='labelled split is missing'):
        build_runner(cfg, 'mlo_no_split').train()
    cfg = mlo_config(mae, str(tmp_path / 'nowhere'), str(tmp_path / 'work'))
    with pytest.raises(FileNotFoundError, match='nowhere'):
        build_runner(cfg, 'mlo_no_folder').train()


def test_one_class_is_one_clear_error(folders, tmp_path, build_runner):
    mae, _ = folders
    one = make_image_folder(str(tmp_path / 'one'), classes=('a', ),
                            per_class=5, size=IMG)
    cfg = mlo_config(mae, one, str(tmp_path / 'work'))
    with pytest.raises(ValueError, match='1 class.*at least 2'):
        build_runner(cfg, 'mlo_one_class').train()


def test_level3_sharing_files_with_evaluation_is_one_clear_error(
        folders, tmp_path, build_runner):
    mae, labelled = folders
    # the evaluation set is one class folder of the labelled images
    evaluation = dict(type='ImageFolder', data_root=labelled,
                      data_prefix='b', with_label=False, pipeline=[])
    cfg = mlo_config(mae, labelled, str(tmp_path / 'work'))
    cfg.train_cfg.heldout_datasets = [evaluation]
    with pytest.raises(ValueError, match=r'level-3 \(val\) part .* shares '
                       r'1 sample\(s\) with the evaluation dataset '
                       r'train_cfg.heldout_datasets\[0\]'):
        build_runner(cfg, 'mlo_heldout').train()
    # the same through the config's val_dataloader
    cfg = mlo_config(mae, labelled, str(tmp_path / 'work'))
    cfg.val_dataloader = dict(
        batch_size=2, num_workers=0, dataset=evaluation,
        sampler=dict(type='DefaultSampler', shuffle=False))
    cfg.val_cfg = dict()
    cfg.val_evaluator = dict(type='Accuracy')
    with pytest.raises(ValueError, match='val_dataloader.dataset'):
        build_runner(cfg, 'mlo_val_overlap').train()
    # disjoint evaluation data passes the check (and training runs)
    other = make_image_folder(str(tmp_path / 'other'), size=IMG, seed=5)
    cfg = mlo_config(mae, labelled, str(tmp_path / 'work'), max_iters=1)
    cfg.train_cfg.heldout_datasets = [dict(evaluation, data_root=other)]
    build_runner(cfg, 'mlo_heldout_ok').train()


# --------------------------------------------------- continued pretraining
def test_continued_pretraining_loads_an_mae_checkpoint(
        folders, tmp_path, build_runner):
    """load_from a MaskedMAE checkpoint (keys = mmpretrain MAE's): the MAE
    parts start from it, the masking network and the head start fresh."""
    from conftest import tiny_config
    from mlmask_mm.registry import MODELS
    mae, labelled = folders
    pretrained = MODELS.build(tiny_config(mae, '/nonexistent').model)
    with torch.no_grad():
        for p in pretrained.parameters():
            p.add_(0.5)  # unlike any initialisation
    path = str(tmp_path / 'mae.pth')
    torch.save(dict(state_dict=pretrained.state_dict()), path)

    cfg = mlo_config(mae, labelled, str(tmp_path / 'work'), max_iters=1)
    cfg.load_from = path
    runner = build_runner(cfg, 'mlo_continued')
    start = _Initial()
    runner.register_hook(start)
    runner.train()
    loaded = pretrained.state_dict()
    for k, v in start.state.items():
        if k.startswith(('backbone.', 'neck.', 'head.')):
            assert torch.equal(v, loaded[k]), k
        else:
            assert k.startswith(('masker.', 'downstream_head.')), k


def test_amp_optim_wrapper_is_refused_with_the_right_setting(
        folders, tmp_path, build_runner):
    mae, labelled = folders
    cfg = mlo_config(mae, labelled, str(tmp_path / 'work'))
    cfg.optim_wrapper.type = 'AmpOptimWrapper'  # tools/train.py --amp
    with pytest.raises(ValueError, match=r"model.amp='bf16'"):
        build_runner(cfg, 'mlo_amp').train()


# ------------------------------------------- leakage check without files
@DATASETS.register_module(force=True)
class InMemoryImages(BaseDataset):
    """Images held in memory, as mmpretrain's CIFAR10/100 (``img`` in the
    data info, no ``img_path``); ``first``: index of the first of ``n``
    images drawn from one fixed random stream; ``bare``: neither."""
    METAINFO = dict(classes=('a', 'b'))

    def __init__(self, n=10, first=0, bare=False, **kwargs):
        self.n, self.first, self.bare = n, first, bare
        super().__init__(serialize_data=False, **kwargs)

    def load_data_list(self):
        rng = np.random.default_rng(7)
        imgs = rng.integers(0, 256, (self.first + self.n, IMG, IMG, 3),
                            dtype=np.uint8)[self.first:]
        return [dict(gt_label=(self.first + i) % 2) if self.bare else
                dict(img=img, gt_label=(self.first + i) % 2)
                for i, img in enumerate(imgs)]


def _in_memory(**kwargs):
    return dict(type='InMemoryImages', pipeline=[dict(type='PackInputs')],
                **kwargs)


def test_leakage_check_compares_in_memory_images_by_content(folders,
                                                            tmp_path, build_runner):
    mae, labelled = folders
    cfg = mlo_config(mae, labelled, str(tmp_path / 'work'), max_iters=1)
    cfg.train_cfg.labelled_split.dataset = _in_memory(n=10)
    # images 8-13 of the same stream: shares 2 images with the split
    cfg.train_cfg.heldout_datasets = [_in_memory(n=6, first=8)]
    with pytest.raises(ValueError, match=r'shares 2 sample\(s\) with the '
                       r'evaluation dataset train_cfg.heldout_datasets\[0\]'
                       r', e.g. an image \(sha1'):
        build_runner(cfg, 'mlo_in_memory_overlap').train()
    # disjoint in-memory evaluation data passes, and training runs
    cfg = mlo_config(mae, labelled, str(tmp_path / 'work'), max_iters=1)
    cfg.train_cfg.labelled_split.dataset = _in_memory(n=10)
    cfg.train_cfg.heldout_datasets = [_in_memory(n=6, first=10)]
    build_runner(cfg, 'mlo_in_memory_ok').train()


def _stream_as_files(root, first, n):
    """Images first .. first+n-1 of InMemoryImages' stream as PNG files in
    class folders (as the CIFAR training files are written)."""
    from PIL import Image
    data = InMemoryImages(n=n, first=first).load_data_list()
    for i, info in enumerate(data):
        folder = osp.join(root, 'ab'[info['gt_label']])
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(info['img']).save(osp.join(folder, f'{i}.png'))
    return root


@pytest.mark.parametrize('first,shared', [(8, 2), (10, 0)])
def test_leakage_check_compares_files_with_in_memory_images_by_pixels(
        folders, tmp_path, build_runner, first, shared):
    """Labelled split of image files, evaluation data in memory (the
    CIFAR-10 test-split option: mmpretrain's CIFAR10): the files are
    decoded and compared by pixels."""
    mae, _ = folders
    files = _stream_as_files(str(tmp_path / 'files'), 0, 10)
    cfg = mlo_config(mae, files, str(tmp_path / 'work'), max_iters=1)
    cfg.train_cfg.heldout_datasets = [_in_memory(n=6, first=first)]
    if shared:
        with pytest.raises(ValueError, match=rf'shares {shared} sample'):
            build_runner(cfg, f'mlo_files_pixels_{first}').train()
    else:
        build_runner(cfg, f'mlo_files_pixels_{first}').train()


@pytest.mark.parametrize('heldout,match', [
    (_in_memory(n=4, bare=True), 'has neither img_path nor img'),
])
def test_leakage_check_refuses_what_it_cannot_verify(folders, tmp_path,
                                                     heldout, match, build_runner):
    mae, labelled = folders
    cfg = mlo_config(mae, labelled, str(tmp_path / 'work'), max_iters=1)
    cfg.train_cfg.labelled_split.dataset = _in_memory(n=10)
    cfg.train_cfg.heldout_datasets = [heldout]
    with pytest.raises(ValueError, match=match):
        build_runner(cfg, f'mlo_unverifiable_{len(match)}').train()
