"""Training that fails safely: non-finite losses, unreadable images,
damaged checkpoints, empty class folders (docs/fail_safe.md).

CPU, the tiny configs of conftest (2-block ViTs, 16 px generated images).
"""
import logging
import os
import os.path as osp
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

from conftest import REPO, load_tool, make_image_folder, tiny_config
from mlmask_mm.engine.config_checks import prepare_config
from mlmask_mm.datasets.image_check import BadImageError
from mlmask_mm.engine.hooks.finite_loss_hook import NonFiniteError
from mlmask_mm.registry import DATASETS
from mlmask_mm.utils import checkpoint_files
from mlmask_mm.utils.checkpoint_files import (CheckpointDamagedError,
                                              atomic_write, partial_path,
                                              resolve_resume)

RUNTIME = osp.join(REPO, 'configs', '_base_', 'default_runtime.py')
_runs = iter(range(10**6))
_PRETTY_TEXT = Config.pretty_text  # the real one, for configs written out


@pytest.fixture(autouse=True)
def fast_config_text(monkeypatch):
    """The config text saved in checkpoints, without yapf (~1.5 s)."""
    monkeypatch.setattr(Config, 'pretty_text',
                        property(lambda self: repr(self._cfg_dict)))


def build_runner(cfg):
    cfg.experiment_name = f'fail_safe_{next(_runs)}'
    return Runner.from_cfg(prepare_config(cfg))


def safe_config(root, work, max_iters=6, interval=1, keep=2, **hooks):
    """tiny_config with the shared runtime's checkpoint hook and fail-safe
    hooks (tiny_config replaces the checkpoint hook's dict)."""
    cfg = tiny_config(root, str(work), max_iters=max_iters)
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=interval, by_epoch=False,
        max_keep_ckpts=keep, backend_args=dict(backend='local_atomic'))
    cfg.default_hooks.finite_loss = dict(type='mlmask_mm.FiniteLossHook',
                                         **hooks)
    return cfg


def checkpoints(work) -> list:
    return sorted(f for f in os.listdir(work) if f.endswith('.pth'))


def all_finite(path) -> bool:
    state = torch.load(path, weights_only=True)['state_dict']
    return all(torch.isfinite(v).all() for v in state.values()
               if v.is_floating_point())


class ForceNonFinite(Hook):
    """Multiply what ``model.<attr>`` returns (a tensor, or ``key`` of a
    dict) by ``value`` in the iterations ``at`` (1-based): a loss forced
    non-finite before the optimizer step."""
    priority = 'HIGHEST'

    def __init__(self, attr, at, key=None, value=float('nan')):
        self.attr, self.at, self.key, self.value = attr, set(at), key, value

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        *path, name = self.attr.split('.')
        obj = runner.model
        for p in path:
            obj = getattr(obj, p)
        obj.__dict__.pop(name, None)  # back to the class's method
        if runner.iter + 1 not in self.at:
            return
        original = getattr(obj, name)

        def forced(*args, **kwargs):
            out = original(*args, **kwargs)
            if isinstance(out, dict):
                return {k: v * self.value if k == self.key else v
                        for k, v in out.items()}
            return out * self.value

        setattr(obj, name, forced)


# ======================================================= non-finite losses
def test_shared_runtime_turns_the_checks_on():
    cfg = Config.fromfile(RUNTIME)
    hooks = cfg.default_hooks
    assert hooks.finite_loss == dict(type='mlmask_mm.FiniteLossHook',
                                     tolerance=0)
    assert hooks.skipped_images.type == 'mlmask_mm.SkippedImagesHook'
    assert hooks.checkpoint.backend_args == dict(backend='local_atomic')
    # a config that names its own CheckpointHook keeps the atomic writes
    demo = Config.fromfile(osp.join(osp.dirname(RUNTIME), '..', 'mae',
                                    'mae_vit-tiny-p4_demo.py'))
    assert demo.default_hooks.checkpoint.backend_args == dict(
        backend='local_atomic')
    assert 'finite_loss' in demo.default_hooks


@pytest.mark.parametrize('value', [float('nan'), float('inf')])
def test_nan_loss_stops_before_saving_and_keeps_good_checkpoints(
        image_folder, tmp_path, value):
    work = tmp_path / 'work'
    runner = build_runner(safe_config(image_folder, work, keep=2))
    runner.register_hook(ForceNonFinite('head.loss', at=[4], value=value))
    with pytest.raises(NonFiniteError) as err:
        runner.train()
    msg = str(err.value)
    assert f'loss={value}' in msg and 'iteration 4' in msg
    assert 'learning rates lr=' in msg and 'iter_3.pth' in msg
    # the newest checkpoint is the last finite one; rotation kept iter_2
    assert checkpoints(work) == ['iter_2.pth', 'iter_3.pth']
    assert all_finite(work / 'iter_3.pth')
    with open(work / 'last_checkpoint') as f:
        assert f.read().endswith('iter_3.pth')


def test_non_finite_parameters_with_finite_losses_are_never_saved(
        image_folder, tmp_path):
    """A step that makes the parameters Inf while its loss was finite:
    the checkpoint due after it is not written and max_keep_ckpts=1 does
    not delete the previous one (mmengine rotates before it saves)."""

    class Blowup(Hook):
        priority = 'HIGH'  # after the step, before FiniteLossHook

        def after_train_iter(self, runner, batch_idx, data_batch=None,
                             outputs=None):
            if runner.iter + 1 == 3:
                with torch.no_grad():
                    runner.model.backbone.pos_embed.fill_(float('inf'))

    work = tmp_path / 'work'
    runner = build_runner(safe_config(image_folder, work, keep=1))
    runner.register_hook(Blowup())
    with pytest.raises(NonFiniteError, match='iteration 3.*pos_embed'):
        runner.train()
    assert checkpoints(work) == ['iter_2.pth']
    assert all_finite(work / 'iter_2.pth')


def test_checkpoint_with_non_finite_parameters_is_refused(image_folder,
                                                          tmp_path):
    work = tmp_path / 'work'
    runner = build_runner(safe_config(image_folder, work, max_iters=1))
    runner.train()
    with torch.no_grad():
        runner.model.backbone.pos_embed.fill_(float('nan'))
    with pytest.raises(NonFiniteError, match='backbone.pos_embed'):
        runner.save_checkpoint(str(work), 'direct.pth')
    assert not (work / 'direct.pth').exists()


def test_tolerance_skips_steps_then_stops(image_folder, tmp_path):
    # tolerance 2: NaN losses in iterations 3 and 4 are skipped (no
    # parameter change), the run finishes with finite parameters
    work = tmp_path / 'tolerant'
    runner = build_runner(safe_config(image_folder, work, tolerance=2))

    class Params(Hook):
        priority = 'LOWEST'
        states = {}

        def after_train_iter(self, runner, batch_idx, data_batch=None,
                             outputs=None):
            Params.states[runner.iter + 1] = {
                k: v.clone() for k, v in runner.model.state_dict().items()}

    runner.register_hook(ForceNonFinite('head.loss', at=[3, 4]))
    runner.register_hook(Params())
    runner.train()
    finite = [h for h in runner.hooks if type(h).__name__ == 'FiniteLossHook']
    assert finite[0].skipped_iters == [3, 4]
    for k, v in Params.states[2].items():
        if k.startswith('backbone.') and v.is_floating_point():
            assert torch.equal(v, Params.states[4][k]), k
    assert all(all_finite(work / c) for c in checkpoints(work))
    assert 'iter_6.pth' in checkpoints(work)

    # tolerance 1: the second non-finite iteration in a row stops the run
    work = tmp_path / 'strict'
    runner = build_runner(safe_config(image_folder, work, tolerance=1))
    runner.register_hook(ForceNonFinite('head.loss', at=[3, 4]))
    with pytest.raises(NonFiniteError, match='iteration 4.*tolerance=1'):
        runner.train()
    assert checkpoints(work) == ['iter_2.pth', 'iter_3.pth']
    assert all(all_finite(work / c) for c in checkpoints(work))


def test_cl_mae_module_terms_are_checked(image_folder, tmp_path):
    from test_cl_mae import cl_config
    work = tmp_path / 'work'
    cfg = cl_config(image_folder, str(work), max_iters=4)
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=1, by_epoch=False, max_keep_ckpts=2)
    runner = build_runner(cfg)
    runner.register_hook(ForceNonFinite('masker_loss', at=[3],
                                        key='loss_masker'))
    with pytest.raises(NonFiniteError) as err:
        runner.train()
    assert 'loss_masker=nan' in str(err.value)
    assert 'iteration 3' in str(err.value)
    assert 'mae.lr=' in str(err.value) and 'masker.lr=' in str(err.value)
    assert checkpoints(work) == ['iter_1.pth', 'iter_2.pth']


def test_tolerance_skips_only_the_non_finite_optimizer_of_cl_mae(
        image_folder, tmp_path):
    """OptimWrapperDict: the module's step (NaN loss_masker) is skipped, the
    MAE's step of the same iteration is taken."""
    from test_cl_mae import cl_config
    cfg = cl_config(image_folder, str(tmp_path / 'work'), max_iters=3)
    cfg.default_hooks.finite_loss = dict(type='mlmask_mm.FiniteLossHook',
                                         tolerance=1)
    runner = build_runner(cfg)
    runner.register_hook(ForceNonFinite('masker_loss', at=[2],
                                        key='loss_masker'))
    states = {}

    class Params(Hook):
        priority = 'LOWEST'

        def after_train_iter(self, runner, batch_idx, data_batch=None,
                             outputs=None):
            states[runner.iter + 1] = {
                k: v.detach().clone()
                for k, v in runner.model.named_parameters()}

    runner.register_hook(Params())
    runner.train()
    masker = [k for k in states[1] if k.startswith('masker.')]
    mae = [k for k in states[1] if not k.startswith('masker.')]
    assert all(torch.equal(states[1][k], states[2][k]) for k in masker)
    assert not all(torch.equal(states[1][k], states[2][k]) for k in mae)
    assert not all(torch.equal(states[2][k], states[3][k]) for k in masker)
    assert all(torch.isfinite(v).all() for v in states[3].values())


def test_mlo_mae_levels_are_checked(tmp_path):
    from test_mlo_loop import IMG, mlo_config
    mae = make_image_folder(str(tmp_path / 'mae'), per_class=4, size=IMG)
    labelled = make_image_folder(str(tmp_path / 'lab'), per_class=5,
                                 size=IMG, seed=1)
    work = tmp_path / 'work'
    cfg = mlo_config(mae, labelled, str(work), max_iters=3)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1,
                                        by_epoch=False)
    runner = build_runner(cfg)
    runner.register_hook(ForceNonFinite('downstream_head.loss', at=[2],
                                        key='loss'))
    with pytest.raises(NonFiniteError) as err:
        runner.train()
    msg = str(err.value)
    assert 'loss_head=nan' in msg and 'iteration 2' in msg
    assert 'head.lr=' in msg and 'masker.lr=' in msg
    assert checkpoints(work) == ['iter_1.pth']
    assert all_finite(work / 'iter_1.pth')


def _dist_nan_worker(rank: int, world_size: int, init_file: str, out: str):
    import types

    import torch.distributed as dist
    from mlmask_mm.engine.hooks import FiniteLossHook
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'file://{init_file}',
                            rank=rank, world_size=world_size)
    try:
        runner = types.SimpleNamespace(
            iter=6, epoch=0, hooks=[], model=torch.nn.Linear(2, 2),
            optim_wrapper=types.SimpleNamespace(
                get_lr=lambda: dict(lr=[0.5])),
            message_hub=types.SimpleNamespace(get_info=lambda key: None),
            logger=logging.getLogger('fail_safe_dist'))
        loss = float('nan') if rank == 1 else 1.0
        try:  # rank 1's loss is NaN, rank 0's is finite
            FiniteLossHook().after_train_iter(
                runner, 0, outputs=dict(loss=torch.tensor(loss)))
            message = None
        except NonFiniteError as e:
            message = str(e)
        with open(f'{out}.{rank}', 'w') as f:
            f.write(repr(message))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_a_nan_on_one_rank_stops_every_rank(tmp_path):
    import torch.multiprocessing as mp
    out = str(tmp_path / 'message')
    mp.spawn(_dist_nan_worker, args=(2, str(tmp_path / 'init'), out),
             nprocs=2, join=True)
    messages = []
    for rank in range(2):
        with open(f'{out}.{rank}') as f:
            messages.append(eval(f.read()))
    assert 'iteration 7' in messages[0]
    assert 'a loss on another process' in messages[0]
    assert 'loss=nan' in messages[1] and 'lr=0.5' in messages[1]


# ===================================================== damaged checkpoints
@pytest.fixture
def trained_work(image_folder, tmp_path):
    """A work dir with iter_2.pth and iter_4.pth (and its config file)."""
    work = tmp_path / 'work'
    cfg = safe_config(image_folder, work, max_iters=4, interval=2, keep=3)
    build_runner(cfg).train()
    assert checkpoints(work) == ['iter_2.pth', 'iter_4.pth']
    cfg.train_cfg.max_iters = 6
    cfg.experiment_name = f'fail_safe_cli_{next(_runs)}'
    path = str(tmp_path / 'cfg.py')
    with open(path, 'w') as f:
        f.write(_PRETTY_TEXT.fget(cfg))
    return work, path


def truncate_to_half(path):
    size = osp.getsize(path)
    with open(path, 'r+b') as f:
        f.truncate(size // 2)


def test_save_interrupted_by_an_exception_leaves_no_file(
        image_folder, tmp_path, monkeypatch):
    work = tmp_path / 'work'
    cfg = safe_config(image_folder, work, max_iters=4, interval=2)
    calls = []

    def failing_fsync(fd):  # the bytes are written, the disk "fails"
        calls.append(fd)
        if len(calls) == 3:  # iter_2.pth, its folder; then iter_4.pth
            raise OSError(28, 'No space left on device')

    monkeypatch.setattr(checkpoint_files.os, 'fsync', failing_fsync)
    runner = build_runner(cfg)
    with pytest.raises(OSError, match='No space left'):
        runner.train()
    assert checkpoints(work) == ['iter_2.pth']
    assert not osp.exists(partial_path(str(work / 'iter_4.pth')))
    with open(work / 'last_checkpoint') as f:
        assert f.read().endswith('iter_2.pth')

    # a failed rewrite leaves the complete file under the name untouched
    target = str(tmp_path / 'x.pth')
    atomic_write(b'complete', target)
    calls.clear()
    monkeypatch.setattr(checkpoint_files.os, 'fsync',
                        lambda fd: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        atomic_write(b'half', target)
    with open(target, 'rb') as f:
        assert f.read() == b'complete'
    assert os.listdir(tmp_path).count('.x.pth.partial') == 0


def test_auto_resume_falls_back_to_the_newest_complete_checkpoint(
        trained_work, monkeypatch):
    work, cfg_path = trained_work
    truncate_to_half(work / 'iter_4.pth')
    train = load_tool('train')
    monkeypatch.setattr(sys, 'argv', [
        'train.py', cfg_path, '--work-dir', str(work), '--resume'])
    resumed = {}
    original = Runner.resume

    def record(self, filename, *args, **kwargs):
        resumed['from'] = filename
        return original(self, filename, *args, **kwargs)

    monkeypatch.setattr(Runner, 'resume', record)
    warnings = []
    monkeypatch.setattr(checkpoint_files, 'print_log',
                        lambda msg, **kw: warnings.append((msg, kw)))
    train.main()
    assert resumed['from'] == str(work / 'iter_2.pth')
    [(msg, kw)] = warnings
    assert kw['level'] == logging.WARNING
    assert f'{work}/iter_4.pth: not a complete torch checkpoint' in msg
    assert checkpoints(work) == ['iter_2.pth', 'iter_4.pth', 'iter_6.pth']
    assert all_finite(work / 'iter_4.pth')  # rewritten, complete


def test_resume_of_a_named_damaged_checkpoint_names_it(trained_work,
                                                        monkeypatch):
    work, cfg_path = trained_work
    damaged = str(work / 'iter_4.pth')
    truncate_to_half(damaged)
    train = load_tool('train')
    monkeypatch.setattr(sys, 'argv', [
        'train.py', cfg_path, '--work-dir', str(work), '--resume', damaged])
    with pytest.raises(CheckpointDamagedError) as err:
        train.main()
    assert damaged in str(err.value) and 'truncated' in str(err.value)
    assert '--resume without a file' in str(err.value)

    cfg = Config.fromfile(cfg_path)
    cfg.load_from, cfg.resume = damaged, False
    with pytest.raises(CheckpointDamagedError, match='load_from'):
        resolve_resume(cfg)
    cfg.load_from = str(work / 'iter_9.pth')
    with pytest.raises(FileNotFoundError, match='iter_9.pth'):
        resolve_resume(cfg)


def largest_member_middle(path) -> int:
    """Offset of the middle byte of a checkpoint's largest zip member's
    data (not the headers' padding, whose place moves with the config text
    the checkpoint holds)."""
    import struct
    import zipfile
    with zipfile.ZipFile(path) as archive:
        info = max(archive.infolist(), key=lambda i: i.compress_size)
    with open(path, 'rb') as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = struct.unpack('<HH', f.read(4))
    return (info.header_offset + 30 + name_len + extra_len
            + info.compress_size // 2)


def test_every_checkpoint_damaged_or_last_checkpoint_empty(trained_work):
    work, cfg_path = trained_work
    cfg = Config.fromfile(cfg_path)
    cfg.work_dir, cfg.resume, cfg.load_from = str(work), True, None
    # a kill while CheckpointHook rewrote last_checkpoint: empty record
    with open(work / 'last_checkpoint', 'w'):
        pass
    resolve_resume(cfg)
    assert cfg.load_from == str(work / 'iter_4.pth')
    # bit damage inside (CRC-32) and truncation: nothing to resume from
    with open(work / 'iter_4.pth', 'r+b') as f:
        f.seek(largest_member_middle(work / 'iter_4.pth'))
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    truncate_to_half(work / 'iter_2.pth')
    cfg.load_from = None
    with pytest.raises(CheckpointDamagedError) as err:
        resolve_resume(cfg)
    msg = str(err.value)
    assert 'iter_4.pth: damaged data (CRC-32' in msg
    assert 'iter_2.pth: not a complete torch checkpoint' in msg


# ===================================================== unreadable images
def bad_tree(root):
    """Two classes of 4 good JPEGs plus one file of each bad kind."""
    make_image_folder(root, per_class=4)
    bad = {}
    bad['empty'] = osp.join(root, 'a', 'empty.jpg')
    open(bad['empty'], 'wb').close()
    good = osp.join(root, 'a', '0000.jpg')
    with open(good, 'rb') as f:
        data = f.read()
    bad['truncated'] = osp.join(root, 'b', 'truncated.jpg')
    with open(bad['truncated'], 'wb') as f:
        f.write(data[:len(data) // 2])
    bad['not an image'] = osp.join(root, 'b', 'notes.png')
    with open(bad['not an image'], 'w') as f:
        f.write('these are not pixels')
    bad['unreadable'] = osp.join(root, 'a', 'vanished.jpg')
    with open(bad['unreadable'], 'wb') as f:
        f.write(data)
    return bad


def folder(root, **kwargs):
    return DATASETS.build(dict(
        type='ImageFolder', data_root=root, serialize_data=False,
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='mmpretrain.PackInputs')], **kwargs))


@pytest.mark.parametrize('kind', ['empty', 'truncated', 'not an image',
                                  'unreadable'])
@pytest.mark.parametrize('backend', ['cv2', 'pillow'])
def test_every_unreadable_kind_names_the_file(tmp_path, kind, backend):
    root = str(tmp_path / 'images')
    bad = bad_tree(root)
    ds = DATASETS.build(dict(
        type='ImageFolder', data_root=root, serialize_data=False,
        pipeline=[dict(type='LoadImageFromFile', imdecode_backend=backend),
                  dict(type='mmpretrain.PackInputs')]))
    os.remove(bad['unreadable'])  # listed, then gone (e.g. network storage)
    idx = [ds.get_data_info(i)['img_path'] for i in range(len(ds))].index(
        bad[kind])
    with pytest.raises(BadImageError) as err:
        ds[idx]
    assert bad[kind] in str(err.value)
    assert str(err.value).split(': ', 2)[-1].startswith(
        {'empty': 'empty file', 'truncated': 'truncated or corrupt JPEG',
         'not an image': 'not an image',
         'unreadable': 'unreadable (FileNotFoundError'}[kind])


def test_skip_replaces_bad_images_deterministically(tmp_path):
    root = str(tmp_path / 'images')
    bad = bad_tree(root)
    ds = folder(root, bad_images='skip')
    os.remove(bad['unreadable'])  # listed, then gone
    paths = [ds.get_data_info(i)['img_path'] for i in range(len(ds))]
    got = [ds[i]['data_samples'].img_path for i in range(len(ds))]
    assert not set(got) & set(bad.values())
    assert sorted(ds.skipped) == sorted(bad.values())
    assert [ds[i]['data_samples'].img_path for i in range(len(ds))] == got
    for i, p in enumerate(paths):
        if p not in bad.values():
            assert got[i] == p
    # evaluation never replaces a sample
    test_ds = folder(root, bad_images='skip', test_mode=True)
    with pytest.raises(BadImageError):
        [test_ds[i] for i in range(len(test_ds))]
    with pytest.raises(ValueError, match="bad_images must be one of"):
        folder(root, bad_images='ignore')


def test_skip_trains_through_and_lists_the_files(tmp_path):
    root = str(tmp_path / 'images')
    bad = bad_tree(root)
    del bad['unreadable']  # stays readable here
    work = tmp_path / 'work'
    # 12 files, batch 4: 2 epochs in 6 iterations, one worker process
    cfg = safe_config(root, work, max_iters=6, interval=3)
    cfg.train_dataloader.dataset.bad_images = 'skip'
    cfg.train_dataloader.num_workers = 1
    cfg.train_dataloader.persistent_workers = True
    runner = build_runner(cfg)
    epochs = []

    class Epochs(Hook):
        priority = 'LOWEST'

        def after_train_epoch(self, runner):
            with open(work / 'skipped_images.txt') as f:
                epochs.append(f.read())

    runner.register_hook(Epochs())
    runner.train()
    with open(work / 'skipped_images.txt') as f:
        listed = dict(line.rstrip('\n').split('\t') for line in f)
    assert sorted(listed) == sorted(bad.values())
    assert listed[bad['empty']].startswith('empty file')
    record = runner.train_dataloader.dataset.skip_record
    with open(record) as f:  # each file once, from the worker process
        records = [line.split('\t')[0] for line in f]
    assert sorted(records) == sorted(bad.values())
    assert runner.train_dataloader.dataset.skipped == {}  # not this process
    assert epochs  # written at an epoch end (IterBasedTrainLoop: the end)


@pytest.mark.slow
def test_empty_class_folder_is_an_error_naming_it(tmp_path):
    root = str(tmp_path / 'images')
    make_image_folder(root, classes=('a', 'c'), per_class=2)
    os.makedirs(osp.join(root, 'b'))
    with pytest.raises(ValueError) as err:
        folder(root)
    assert repr(osp.join(root, 'b')) in str(err.value)
    assert 'with_label=False' in str(err.value)
    # unlabelled (pretraining): folders carry no label
    assert len(folder(root, with_label=False)) == 4
    # few-shot trees: the empty folder of one tree is named
    tree = tmp_path / 'fewshot'
    make_image_folder(str(tree / 'train'), per_class=2)
    make_image_folder(str(tree / 'test'), per_class=2)
    os.makedirs(tree / 'test' / 'z')
    os.makedirs(tree / 'train' / 'z')
    with open(tree / 'train' / 'z' / 'x.jpg', 'wb') as f:
        with open(tree / 'train' / 'a' / '0000.jpg', 'rb') as g:
            f.write(g.read())
    with pytest.raises(ValueError, match=r"test/z'"):
        DATASETS.build(dict(type='FewShotFolders', data_root=str(tree)))


def test_verify_dataset_lists_bad_files_and_empty_classes(tmp_path,
                                                         capsys):
    root = str(tmp_path / 'images')
    bad = bad_tree(root)
    os.makedirs(osp.join(root, 'empty_class'))
    tool = load_tool('misc/verify_dataset')
    for workers in (1, 2):
        report = tool.scan(root, workers=workers)
        assert report.num_images == 12
        assert sorted(report.bad) == sorted(
            v for k, v in bad.items() if k != 'unreadable')
        assert report.empty_classes == [osp.join(root, 'empty_class')]
    assert tool.main([root, '--workers', '2']) == 1
    out = capsys.readouterr().out
    assert f'{bad["truncated"]}\ttruncated or corrupt JPEG' in out
    assert 'images/s' in out and 'empty class folder' in out
    good = make_image_folder(str(tmp_path / 'good'), per_class=3)
    assert tool.main([good, '--workers', '1', '--full-decode']) == 0
    assert tool.main([good, '--no-decode']) == 0
