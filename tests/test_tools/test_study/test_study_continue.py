"""The study's continued pretraining (--continue LABEL=BASE@N), its
random-init rows (--random-init, tools/misc/init_checkpoint.py) and the
mask_specificity column read from the training logs."""
import glob
import json
import os
import os.path as osp
import sys

import pytest
import torch
from mmengine.config import Config

from conftest import REPO, load_tool, make_image_folder, tiny_config
from mlmask_mm.evaluation.checkpoint_images import build_model

sys.path.insert(0, osp.join(REPO, 'tools'))  # tools/study, not installed
import study  # noqa: E402
from study.continued import kept_checkpoints, logged_mean  # noqa: E402
from study.continued import spent_budget  # noqa: E402

MAE_DEMO = osp.join(REPO, 'configs', 'mae', 'mae_vit-tiny-p4_demo.py')
MLO_10K = osp.join(REPO, 'configs', 'mlo_mae',
                   'mlo-mae_vit-tiny-p4_1xb64-coslr-10k_cifar10.py')
CLASSES = ('a', 'b', 'c')


def _data(root, per_class=14):
    make_image_folder(osp.join(root, 'train'), CLASSES, per_class, seed=1)
    make_image_folder(osp.join(root, 'val'), CLASSES, 3, seed=2)
    return root


def _study(tmp_path, *extra):
    data = str(tmp_path / 'data')
    if not osp.isdir(data):
        _data(data)
    return study.Study(study.parse_args([
        MAE_DEMO, MLO_10K, '--labels', 'mae', 'mlo', '--data', data,
        '--out-dir', str(tmp_path / 'out'), *extra]))


def _options(run):
    return dict(o.split('=', 1) for o in run['options'])


def test_continued_run_starts_from_its_own_seeds_base_with_the_rest(
        tmp_path):
    """100 plain-MAE steps: MAE trains 100, MLO-MAE (5 steps per outer
    iteration) starts from MAE's iteration-90 checkpoint of the SAME seed
    and gets the 10 steps left: 2 outer iterations, 90 + 2 x 5 = 100."""
    s = _study(tmp_path, '--iters', '100', '--cost', 'mae=1', 'mlo=5',
               '--continue', 'mlo=mae@90', '--ckpt-interval', '10',
               '--seeds', '0', '1', '--dry-run')
    runs = {(r['label'], r['seed']): r for r in s.runs}
    for seed in (0, 1):
        mae, mlo = runs['mae', seed], runs['mlo', seed]
        assert mae['length']['iterations'] == 100
        assert mlo['length']['length'] == 2
        assert mlo['length']['mae_steps'] == 100
        assert mlo['length']['continued']['iterations'] == 90
        assert mlo['start_from'] == osp.join(mae['dir'], 'pretrain',
                                             'iter_90.pth')
        assert f'iters100_seed{seed}' in mlo['start_from']
        opts = _options(mlo)
        assert opts['train_cfg.max_iters'] == '2'
        # logged at least once in the last tenth (the config logs every 50)
        assert opts['default_hooks.logger.interval'] == '1'
        assert _options(mae)['default_hooks.logger.interval'] == '5'
        assert opts['randomness.seed'] == str(seed)
        assert osp.basename(mlo['dir']) == f'from-mae90_iters2_seed{seed}'
        assert mae['start_from'] is None
    # its first sitting loads the base's weights from iteration 0: load_from
    # without --resume (tools/train.py's --resume would drop load_from)
    s.run()
    commands = open(tmp_path / 'out' / 'commands.sh').read().splitlines()
    train = [c for c in commands if ' --work-dir ' in c and
             'from-mae90_iters2_seed1/pretrain ' in c]
    assert len(train) == 1
    assert 'load_from=' + runs['mlo', 1]['start_from'] in train[0]
    assert '--resume' not in train[0]
    # the continued run's schedule covers its own 2 iterations
    assert _options(runs['mlo', 0])['param_scheduler.mae.1.end'] == '2'


def test_continued_run_with_an_epoch_budget(tmp_path):
    """--epochs: what BASE's first N epochs cost is taken off in epochs of
    plain MAE (MAE demo batch 64 on 42 images: 1 iteration per epoch; MLO
    10k: 2 batches of 64 per outer iteration, also 1 per epoch)."""
    s = _study(tmp_path, '--epochs', '8', '--continue', 'mlo=mae@6',
               '--ckpt-interval', '2', '--seeds', '0', '--dry-run')
    mlo = [r for r in s.runs if r['label'] == 'mlo'][0]
    assert mlo['length']['length'] == 2  # 8 - 6 epochs x 1 iteration
    assert mlo['length']['continued']['iterations'] == 6


def test_spent_budget_by_hand():
    # MAE counted in iterations, 704 per epoch of 45k images at batch 64
    mae = dict(unit='iters', iters_per_epoch=704, ratio=1.0)
    assert spent_budget(mae, 4500, 'iters') == dict(
        iterations=4500, mae_steps=4500.0, budget=4500.0)
    assert spent_budget(mae, 4500, 'epochs')['budget'] == \
        pytest.approx(4500 / 704)
    # a base counted in epochs, costing 2 plain-MAE steps per iteration
    other = dict(unit='epochs', iters_per_epoch=10, ratio=2.0)
    assert spent_budget(other, 3, 'iters') == dict(
        iterations=30, mae_steps=60.0, budget=60.0)
    assert spent_budget(other, 3, 'epochs')['budget'] == 6.0


def test_kept_checkpoints():
    assert kept_checkpoints(5000, 500) == [4500, 5000]
    assert kept_checkpoints(105, 10) == [100, 105]  # the last one too
    assert kept_checkpoints(3, 10) == [3]


@pytest.mark.parametrize('extra, error', [
    (['--continue', 'mae=mlo@90'], 'list'),
    (['--continue', 'mlo=nope@90'], 'not a config'),
    (['--continue', 'mlo=mae'], 'LABEL=BASE@N'),
    (['--continue', 'mlo=mae@50'], r'keeps the checkpoints after \[90, 100\]'),
    (['--continue', 'mlo=mae@100'], 'whole budget'),
])
def test_bad_continue_stops_before_anything_runs(tmp_path, extra, error):
    with pytest.raises(ValueError, match=error):
        _study(tmp_path, '--iters', '100', '--ckpt-interval', '10',
               '--seeds', '0', '--dry-run', *extra)
    assert not osp.exists(tmp_path / 'out' / 'runs')


def test_init_checkpoint_is_the_seeded_untrained_model(tmp_path):
    init = load_tool('misc/init_checkpoint')
    a, b, c = (str(tmp_path / f'{n}.pth') for n in 'abc')
    init.main([MAE_DEMO, a, '--seed', '0'])
    init.main([MAE_DEMO, b, '--seed', '0'])
    init.main([MAE_DEMO, c, '--seed', '1'])
    sa, sb, sc = (torch.load(p, weights_only=True) for p in (a, b, c))
    key = 'backbone.layers.0.attn.qkv.weight'
    torch.testing.assert_close(sa['state_dict'][key], sb['state_dict'][key])
    assert not torch.equal(sa['state_dict'][key], sc['state_dict'][key])
    # the architecture travels with it, as in a Runner's checkpoint
    cfg = Config.fromstring(sa['meta']['cfg'], '.py')
    assert cfg.model.backbone.arch == 'mae_tiny' or \
        cfg.model.backbone.arch['num_layers'] == 12
    assert sa['meta']['iter'] == 0 and sa['meta']['seed'] == 0
    with pytest.raises(FileNotFoundError, match='nope.py'):
        init.main(['nope.py', a])


def _scalars(folder, records):
    os.makedirs(osp.join(folder, 'vis_data'))
    with open(osp.join(folder, 'vis_data', 'scalars.json'), 'w') as f:
        for r in records:
            f.write(json.dumps(r) + '\n')


def test_logged_mean_reads_the_last_tenth_of_every_sitting(tmp_path):
    pre = str(tmp_path / 'pretrain')
    _scalars(osp.join(pre, '20260101_000000'),
             [dict(iter=i, loss=1.0, mask_specificity=0.0)
              for i in range(10, 101, 10)])
    # resumed after 80: its 90 and 100 replace the first sitting's
    _scalars(osp.join(pre, '20260101_010000'),
             [dict(iter=i, mask_specificity=0.5) for i in (90, 100)])
    assert logged_mean(pre, 'mask_specificity', final_iter=100) == 0.5
    # the last fifth: iterations 90, 100 (0.5) and ... 81-100 only
    assert logged_mean(pre, 'mask_specificity', 0.3, 100) == \
        pytest.approx((0.0 + 0.5 + 0.5) / 3)
    assert logged_mean(pre, 'nothing') is None
    assert logged_mean(str(tmp_path / 'missing'), 'mask_specificity') is None


@pytest.mark.slow
def test_continued_and_random_init_rows_end_to_end(tmp_path):
    """Through the tools: a continued run's weights are the base's
    checkpoint (made recognisable, lr 0 for the continued run), the
    random-init rows probe the seeded untrained model, and the table has
    each run's logged mask_specificity."""
    data = _data(str(tmp_path / 'data'))
    cfg = tiny_config(osp.join(data, 'train'), str(tmp_path / 'unused'),
                      max_iters=4)
    cfg.pop('work_dir')
    base_cfg = str(tmp_path / 'tiny_mae.py')
    cfg.dump(base_cfg)
    cfg.optim_wrapper.optimizer.lr = 0.0  # the continued run stays put
    cont_cfg = str(tmp_path / 'tiny_cont.py')
    cfg.dump(cont_cfg)
    out = tmp_path / 'out'
    common = ['--data', data, '--iters', '4', '--seeds', '0',
              '--ckpt-interval', '1', '--num-workers', '0', '--device',
              'cpu', '--out-dir', str(out), '--in-process', '--no-plot',
              '--shots', '1', '--fewshot-seeds', '1']
    study.main([base_cfg, '--labels', 'base', '--probes', *common])
    base_ckpt = out / 'runs' / 'base' / 'iters4_seed0' / 'pretrain' / \
        'iter_3.pth'
    ckpt = torch.load(base_ckpt, map_location='cpu', weights_only=False)
    ckpt['state_dict']['backbone.cls_token'].fill_(0.123)
    torch.save(ckpt, base_ckpt)
    argv = [base_cfg, cont_cfg, '--labels', 'base', 'cont', '--continue',
            'cont=base@3', '--cost', 'base=1', 'cont=0.5', '--random-init',
            '--probes', 'fewshot', *common]
    study.main(argv)
    pretrain = out / 'runs' / 'cont' / 'from-base3_iters2_seed0' / 'pretrain'
    cont = torch.load(pretrain / 'iter_2.pth', map_location='cpu',
                      weights_only=False)['state_dict']
    for k, v in ckpt['state_dict'].items():
        if k.startswith(('backbone.', 'neck.')):
            torch.testing.assert_close(cont[k], v, msg=k)
    # interrupted after its iteration 1: it resumes from there, not from
    # the base's checkpoint
    os.remove(pretrain / 'iter_2.pth')
    (pretrain / 'last_checkpoint').write_text(str(pretrain / 'iter_1.pth'))
    result = study.main(argv)
    logs = ''.join(open(p).read() for p in
                   glob.glob(str(pretrain / '*' / '*.log')))
    assert 'resumed epoch: 0, iter: 1' in logs
    train = [c for c in open(out / 'commands.sh').read().splitlines()
             if str(pretrain) + ' ' in c]
    assert len(train) == 1 and '--resume' in train[0]
    assert 'load_from' not in train[0]
    rows = {r['label']: r for r in result['summary']}
    assert list(rows) == ['base', 'cont', 'random-init']
    # 3 base steps + 2 x 0.5
    assert rows['cont']['mae_steps'] == 4 and rows['cont']['iterations'] == 2
    assert rows['cont']['continued'] == dict(label='base', at=3,
                                             unit='iters')
    # random init: the seeded untrained first config, probed like the rest
    init = torch.load(out / 'runs' / 'random-init' / 'init_seed0' /
                      'pretrain' / 'init.pth', weights_only=True)
    model, _ = build_model(base_cfg)
    assert set(init['state_dict']) == set(model.state_dict())
    assert rows['random-init']['mae_steps'] == 0
    few = json.load(open(out / 'runs' / 'random-init' / 'init_seed0' /
                         'fewshot' / 'fewshot.json'))['results']
    assert rows['random-init']['metrics']['fewshot_1shot_top1'][
        'values'] == [few[0]['acc1_mean']]
    # mask_specificity as logged: random masks of 4 images, about 1
    for label in ('base', 'cont'):
        ms = rows[label]['mask_specificity']
        assert ms['n'] == 1 and 0.3 < ms['mean'] < 1.5, (label, ms)
    assert rows['random-init']['mask_specificity']['n'] == 0
    table = open(out / 'study.md').read()
    assert '| cont | 1 | 2 iters after base 3 iters | 2 | 0.5 | 4 |' in table


def test_fewshot_feature_gets_its_own_folder(tmp_path):
    s = _study(tmp_path, '--iters', '100', '--seeds', '0', '--dry-run',
               '--probes', 'fewshot', '--fewshot-feature', 'mean_patch')
    s.run()
    few = [c for c in open(tmp_path / 'out' / 'commands.sh').read()
           .splitlines() if 'fewshot.py' in c]
    assert len(few) == 2
    for run, cmd in zip(s.runs, few):
        assert osp.basename(run['fewshot_dir']) == 'fewshot_mean_patch'
        assert cmd.endswith('--feature mean_patch') or \
            '--feature mean_patch ' in cmd
