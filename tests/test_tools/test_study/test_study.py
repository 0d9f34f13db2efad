"""tools/misc/study.py: equal-budget study end to end on generated images,
resuming, budgets from cost ratios, compressed schedules, bad input."""
import glob
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

from conftest import REPO, load_tool, make_image_folder, tiny_config

sys.path.insert(0, osp.join(REPO, 'tools'))  # tools/study, not installed
import study  # noqa: E402

CLASSES = ('a', 'b', 'c', 'd', 'e', 'f')
MAE_DEMO = osp.join(REPO, 'configs', 'mae', 'mae_vit-tiny-p4_demo.py')
SG_DEMO = osp.join(REPO, 'configs', 'sg_mae', 'sg-mae_vit-tiny-p4_demo.py')
CL_DEMO = osp.join(REPO, 'configs', 'cl_mae', 'cl-mae_vit-tiny-p4_demo.py')
MLO_C10 = osp.join(REPO, 'configs', 'mlo_mae', 'mlo-mae_vit-tiny-p4_1xb128-coslr-100e_cifar10.py')


@pytest.fixture(scope='module', autouse=True)
def _unformatted_config_text():
    """Config text (logged and saved by every Runner, several per run)
    without yapf's formatting: valid Python all the same, and ~10 s less
    per Runner on a loaded 2-core machine."""
    with pytest.MonkeyPatch.context() as m:
        m.setattr('mmengine.config.config.FormatCode',
                  lambda text, **kwargs: (text, False))
        yield


def _data(root, per_class=6, val_per_class=3):
    make_image_folder(osp.join(root, 'train'), CLASSES, per_class, seed=1)
    make_image_folder(osp.join(root, 'val'), CLASSES, val_per_class, seed=2)
    return root


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """Two tiny pretraining configs (8 iterations each): plain MAE and
    Self-Guided MAE switching to informed masks at iteration 4."""
    tmp = tmp_path_factory.mktemp('study')
    data = _data(str(tmp / 'data'))
    mae = tiny_config(osp.join(data, 'train'), str(tmp / 'unused'),
                      max_iters=8)
    sg = tiny_config(osp.join(data, 'train'), str(tmp / 'unused'),
                     max_iters=8, config=SG_DEMO)
    sg.model.switch = dict(criterion='fixed', start=4, by_epoch=False,
                           interval=2, earliest=1, fallback=None)
    sg.model.measurement = dict(num_images=4)
    sg.custom_hooks = [dict(type='SelfGuidedHook')]
    paths = []
    for name, cfg in (('tiny_mae', mae), ('tiny_sg', sg)):
        cfg.pop('work_dir')
        paths.append(str(tmp / f'{name}.py'))
        cfg.dump(paths[-1])
    return dict(tmp=tmp, data=data, configs=paths)


def _argv(tiny, out, *extra):
    return [*tiny['configs'], '--data', tiny['data'], '--iters', '4',
            '--seeds', '0', '--probe-epochs', '1', '--probe-batch-size', '8',
            '--shots', '1', '2', '--fewshot-seeds', '2', '--num-workers',
            '0', '--device', 'cpu', '--out-dir', str(out), '--in-process',
            *extra]


@pytest.mark.slow
def test_study_end_to_end_then_nothing_reruns(tiny, monkeypatch):
    out = tiny['tmp'] / 'out'
    result = load_tool('misc/study').main(_argv(tiny, out))

    # outputs: table, JSON, plot, commands
    for name in ('study.md', 'study.json', 'commands.sh'):
        assert osp.isfile(out / name), name
    assert osp.getsize(out / 'study.png') > 5000
    assert json.load(open(out / 'study.json'))['summary'] == \
        json.loads(json.dumps(result['summary']))
    assert subprocess.call(['bash', '-n', str(out / 'commands.sh')]) == 0

    rows = {r['label']: r for r in result['summary']}
    assert sorted(rows) == ['tiny_mae', 'tiny_sg']
    for label, row in rows.items():
        run = osp.join(out, 'runs', label, 'iters4_seed0')
        # half the configs' 8 iterations: the schedules were compressed
        assert (row['unit'], row['length'], row['iterations']) == \
            ('iters', 4, 4)
        ckpt = torch.load(osp.join(run, 'pretrain', 'iter_4.pth'),
                          map_location='cpu', weights_only=True)
        assert ckpt['meta']['iter'] == 4
        meta_cfg = Config.fromstring(ckpt['meta']['cfg'], '.py')
        assert meta_cfg.param_scheduler[0].end == 4  # 8 in the config
        # the probes read the converted backbone
        backbone = torch.load(osp.join(run, 'backbone.pth'),
                              weights_only=True)['state_dict']
        assert sorted(backbone) == sorted(
            k[len('backbone.'):] for k in ckpt['state_dict']
            if k.startswith('backbone.'))
        probe = torch.load(osp.join(run, 'linear_probe_1e', 'epoch_1.pth'),
                           map_location='cpu',
                           weights_only=True)['state_dict']
        for k, v in backbone.items():  # frozen: still the pretrained weights
            torch.testing.assert_close(probe['backbone.' + k], v, msg=k)
        probe_cfg = Config.fromfile(osp.join(run, 'linear_probe_1e.py'))
        assert probe_cfg.train_dataloader.dataset.data_prefix == 'train'
        assert probe_cfg.test_dataloader.dataset.data_prefix == 'val'
        assert probe_cfg.val_dataloader is None  # val: reported at the end
        # table cells are the per-run files' numbers (one seed: no std)
        linear = json.load(open(osp.join(run, 'linear_probe_1e',
                                          'metrics.json')))
        few = {r['shots']: r['acc1_mean'] for r in json.load(
            open(osp.join(run, 'fewshot', 'fewshot.json')))['results']}
        m = row['metrics']
        assert m['linear_top1']['values'] == [linear['accuracy/top1']]
        assert m['linear_top5']['values'] == [linear['accuracy/top5']]
        assert m['fewshot_1shot_top1']['values'] == [few[1]]
        assert m['fewshot_2shot_top1']['values'] == [few[2]]
        for v in m.values():
            assert v['n'] == 1 and v['std'] is None
            assert 0 <= v['mean'] <= 100
    # Self-Guided MAE switched to informed masks at the compressed start (2)
    sg = torch.load(osp.join(out, 'runs', 'tiny_sg', 'iters4_seed0',
                             'pretrain', 'iter_4.pth'), weights_only=True)
    state = sg['state_dict']['sg_state.switch']  # (switch_at, ...)
    assert state[0] == 2, state

    table = open(out / 'study.md').read()
    assert '| tiny_mae | 1 | 4 iters | 4 | 1 | 4 |' in table
    lin = rows['tiny_sg']['metrics']['linear_top1']['mean']
    assert f'| {lin:.1f} ± – |' in table
    commands = open(out / 'commands.sh').read().splitlines()
    assert len([c for c in commands if c.startswith(sys.executable)]) == \
        2 * 5  # train, convert, probe train, probe test, few-shot
    assert any('train_cfg.max_iters=4' in c and '--resume' in c
               for c in commands)

    # a second call finds every output and runs nothing
    calls = []
    monkeypatch.setattr(study.steps, 'run_command',
                        lambda *a, **k: calls.append(a) or 0.0)
    again = study.main(_argv(tiny, out))
    assert calls == []
    assert again['summary'] == result['summary']


@pytest.mark.slow
def test_interrupted_pretraining_resumes_from_its_last_checkpoint(
        tiny, tmp_path, monkeypatch):
    out = tmp_path / 'out'
    argv = [tiny['configs'][0], '--data', tiny['data'], '--iters', '4',
            '--seeds', '1', '--probes', '--ckpt-interval', '2',
            '--num-workers', '0', '--out-dir', str(out), '--in-process',
            '--no-plot']
    # the first sitting trains, then the study is stopped before it can
    # record the sitting's time (as a kill does)
    real, seconds = study.run_command, []

    def stopped(*a, **k):
        seconds.append(real(*a, **k))
        raise KeyboardInterrupt

    monkeypatch.setattr(study.steps, 'run_command', stopped)
    with pytest.raises(KeyboardInterrupt):
        study.main(argv)
    pretrain = out / 'runs' / 'tiny_mae' / 'iters4_seed1' / 'pretrain'
    assert sorted(os.listdir(pretrain / '..')) == [
        'pretrain', 'pretrain_sitting.json']

    def timed(*a, **k):
        seconds.append(real(*a, **k))
        return seconds[-1]

    monkeypatch.setattr(study.steps, 'run_command', timed)
    # interrupted after iteration 2
    os.remove(pretrain / 'iter_4.pth')
    (pretrain / 'last_checkpoint').write_text(str(pretrain / 'iter_2.pth'))
    study.main(argv)
    assert osp.isfile(pretrain / 'iter_4.pth')
    logs = ''.join(open(p).read() for p in
                   glob.glob(str(pretrain / '*' / '*.log')))
    # tools/train.py --resume picks the newest complete checkpoint
    # (docs/fail_safe.md) and mmengine resumes from it
    assert f'Load checkpoint from {pretrain}/iter_2.pth' in logs
    assert 'resumed epoch: 0, iter: 2' in logs
    assert sorted(os.listdir(pretrain / '..')) == [
        'pretrain', 'pretrain_time.json']
    timing = json.load(open(pretrain / '..' / 'pretrain_time.json'))
    assert (timing['sittings'], timing['stopped_sittings']) == (2, 1)
    # the stopped sitting counts up to its last file write (its final
    # checkpoint and log, written just before the stop)
    first, second = seconds
    assert second + 0.3 * first <= timing['seconds'] <= second + first + 0.5


def _plan(tmp_path, configs, *extra, n=40):
    data = str(tmp_path / 'data')
    if not osp.isdir(data):
        _data(data, per_class=n // len(CLASSES) + 1)
    args = study.parse_args([*configs, '--data', data, *extra,
                             '--out-dir', str(tmp_path / 'out')])
    return study.Study(args)


def _merged(run):
    cfg = Config.fromfile(run['config'])
    import argparse
    from mmengine.config import DictAction
    p = argparse.ArgumentParser()
    p.add_argument('--o', nargs='+', action=DictAction)
    cfg.merge_from_dict(p.parse_args(['--o', *run['options']]).o)
    return cfg


def test_equal_compute_budget_from_cost_ratios(tmp_path):
    """--iters 100 plain-MAE steps: a config costing r steps per iteration
    trains 100 / r iterations, with its schedule compressed to them."""
    s = _plan(tmp_path, [MAE_DEMO, SG_DEMO, CL_DEMO, MLO_C10], '--iters',
              '100', '--seeds', '0', '--cost', 'mae_vit-tiny-p4_demo=1',
              'sg-mae_vit-tiny-p4_demo.py=2', f'{CL_DEMO}=3',
              'mlo-mae_vit-tiny-p4_1xb128-coslr-100e_cifar10=4')
    runs = {r['label']: r for r in s.runs}
    mae, sg, cl, mlo = (
        _merged(runs[k]) for k in ('mae_vit-tiny-p4_demo',
                                   'sg-mae_vit-tiny-p4_demo',
                                   'cl-mae_vit-tiny-p4_demo',
                                   'mlo-mae_vit-tiny-p4_1xb128-coslr-100e_cifar10'))
    # plain MAE: 100 of 400 iterations; warm-up 40 -> 10, cosine to 100
    assert mae.train_cfg.max_iters == 100
    assert [(p.begin, p.end) for p in mae.param_scheduler] == [(0, 10),
                                                              (10, 100)]
    assert mae.train_dataloader.dataset.data_root == s.data['root']
    assert mae.train_dataloader.dataset.data_prefix == 'train'
    # SG: 50 of 400; the crossing checked every 25 -> 3.125 -> 3 iterations,
    # not before 50 -> 6.25 -> 6, fallback 200 -> 25
    assert sg.train_cfg.max_iters == 50
    sw = sg.model.switch
    assert (sw.interval, sw.earliest, sw.fallback) == (3, 6, 25)
    assert [(p.begin, p.end) for p in sg.param_scheduler] == [(0, 5),
                                                             (5, 50)]
    # CL: 33 of 300 (both optimizers' schedules); warm-up 30 -> 3.3 -> 3
    assert cl.train_cfg.max_iters == 33
    for part in ('mae', 'masker'):
        assert [(p.begin, p.end) for p in cl.param_scheduler[part]] == [
            (0, 3), (3, 33)]
    # MLO-MAE counts epochs: 25 iterations of batch 128 on 42 images
    # (1 iteration per epoch) -> 25 of 100 epochs, warm-up 10 -> 2.5 -> 2
    # (Python rounds half to even), cosine T_max 90 -> 22.5 -> 22
    assert mlo.train_cfg.max_epochs == 25
    for part in ('mae', 'head', 'masker'):
        warm, cos = mlo.param_scheduler[part]
        assert (warm.begin, warm.end, cos.begin, cos.end, cos.T_max) == (
            0, 2, 2, 25, 22)
    assert mlo.train_cfg.labelled_split.dataset.data_prefix == 'train'
    assert mlo.train_cfg.labelled_split.dataset.data_root == s.data['root']
    # this config reports stage II on a split of the training data: no
    # held-out dataset to point at the val part
    assert mlo.train_cfg.heldout_datasets == []
    # equal compute: iterations x ratio ~ 100 plain-MAE steps
    steps = {k: r['length']['mae_steps'] for k, r in runs.items()}
    assert steps == {'mae_vit-tiny-p4_demo': 100,
                     'sg-mae_vit-tiny-p4_demo': 100,
                     'cl-mae_vit-tiny-p4_demo': 99,
                     'mlo-mae_vit-tiny-p4_1xb128-coslr-100e_cifar10': 100}
    for r in s.runs:
        assert 'randomness.seed=0' in r['options']


def test_epoch_budget_converts_to_iterations(tmp_path):
    """--epochs 2 on 42 images: the MAE demo (batch 64, iteration-based)
    trains ceil(42 / 64) x 2 = 2 iterations; with ratio 0.5 four."""
    s = _plan(tmp_path, [MAE_DEMO], '--epochs', '2', '--seeds', '3', '4')
    assert [r['length']['length'] for r in s.runs] == [2, 2]
    assert [r['dir'].split(os.sep)[-1] for r in s.runs] == [
        'iters2_seed3', 'iters2_seed4']
    s = _plan(tmp_path, [MAE_DEMO], '--epochs', '2', '--cost',
              'mae_vit-tiny-p4_demo=0.5')
    assert s.runs[0]['length']['iterations'] == 4
    # --cfg-options apply first: batch 21 -> 2 iterations per epoch; a cost
    # ratio may name the config by its label
    s = _plan(tmp_path, [MAE_DEMO], '--epochs', '2', '--labels', 'mae',
              '--cost', 'mae=1', '--cfg-options',
              'train_dataloader.batch_size=21')
    assert s.runs[0]['length']['iterations'] == 4
    assert _merged(s.runs[0]).train_dataloader.batch_size == 21
    # MLO-MAE's outer iteration reads K = 2 batches: batch 7 -> 3 outer
    # iterations per epoch (the MAE demo: 6 iterations)
    s = _plan(tmp_path, [MAE_DEMO, MLO_C10], '--epochs', '2', '--seeds',
              '0', '--cfg-options', 'train_dataloader.batch_size=7')
    assert [(r['length']['unit'], r['length']['length'],
             r['length']['iterations']) for r in s.runs] == [
                 ('iters', 12, 12), ('epochs', 2, 6)]


def test_cost_ratios_from_a_json_file(tmp_path):
    mapping = tmp_path / 'costs.json'
    mapping.write_text(json.dumps({'costs': {'a.py': 1, 'b': 2.5}}))
    records = tmp_path / 'records.json'
    records.write_text(json.dumps([{'config': 'c', 'ratio': 1.9},
                                   {'config': 'd', 'cost_ratio': 3}]))
    assert study.parse_costs(['e=4'], [str(mapping), str(records)]) == {
        'a.py': 1.0, 'b': 2.5, 'c': 1.9, 'd': 3.0, 'e': 4.0}
    with pytest.raises(ValueError, match="'b' has two cost ratios"):
        study.parse_costs(['b=3'], [str(mapping)])
    with pytest.raises(ValueError, match='positive'):
        study.parse_costs(['x=0'])
    with pytest.raises(ValueError, match='CONFIG=RATIO'):
        study.parse_costs(['x'])


@pytest.mark.parametrize('extra, error', [
    (['--cost', 'mae_vit-tiny-p4_demo=1'],
     'no cost ratio for .*sg-mae_vit-tiny-p4_demo.py'),
    (['--cost', 'mae_vit-tiny-p4_demo=1', 'sg-mae_vit-tiny-p4_demo=2',
      'other=3'], r"configs not in the study: \['other'\]"),
    (['--labels', 'same', 'same'], 'must differ'),
    (['--cfg-options', 'train_cfg.max_iters=5'], 'the study sets these'),
    (['--labels', 'one'], '1 names for 2 configs'),
    (['--val-split', 'test'], r'data/test is not a folder'),
])
def test_bad_input_stops_before_anything_runs(tmp_path, extra, error):
    with pytest.raises((ValueError, FileNotFoundError), match=error):
        _plan(tmp_path, [MAE_DEMO, SG_DEMO], '--iters', '10', *extra)
    assert not osp.exists(tmp_path / 'out')


def test_data_parts_must_have_the_same_classes(tmp_path):
    _data(str(tmp_path / 'data'))
    make_image_folder(str(tmp_path / 'data' / 'val'), ('zzz', ), 1)
    with pytest.raises(ValueError, match=r"different classes: \['zzz'\]"):
        _plan(tmp_path, [MAE_DEMO], '--iters', '10')


def _link_probe_split(data, source, per_class):
    """ROOT/probe/<class>/: links to the first files of ROOT/<source>/."""
    for c in CLASSES:
        os.makedirs(osp.join(data, 'probe', c))
        for f in sorted(os.listdir(osp.join(data, source, c)))[:per_class]:
            os.symlink(osp.join(data, source, c, f),
                       osp.join(data, 'probe', c, f))


def test_probe_split_fits_both_probes_on_its_own_folders(tmp_path):
    s = _plan(tmp_path, [MAE_DEMO], '--iters', '10')
    data = str(tmp_path / 'data')
    _link_probe_split(data, 'train', 2)
    s = _plan(tmp_path, [MAE_DEMO], '--iters', '10', '--probe-split',
              'probe', '--probe-epochs', '3', '--dry-run')
    assert (s.data['probe_split'], s.data['num_probe']) == \
        ('probe', 2 * len(CLASSES))
    run = s.runs[0]
    assert run['probe_dir'].endswith('linear_probe_3e_probe')
    assert run['fewshot_dir'].endswith('fewshot_probe')
    s.run()
    commands = open(tmp_path / 'out' / 'commands.sh').read()
    assert '--train-split probe --test-split val' in commands
    # the pretraining still reads the train part
    assert 'train_dataloader.dataset.data_prefix=train' in commands
    cfg = study.probe_config(run['cfg'], s.probe, s.data, 'b.pth', 3, 0)
    assert cfg.train_dataloader.dataset.data_prefix == 'probe'
    assert cfg.test_dataloader.dataset.data_prefix == 'val'


def test_probe_split_sharing_an_image_with_val_is_refused(tmp_path):
    _plan(tmp_path, [MAE_DEMO], '--iters', '10')
    data = str(tmp_path / 'data')
    _link_probe_split(data, 'val', 1)
    with pytest.raises(ValueError, match='share 6 images'):
        _plan(tmp_path, [MAE_DEMO], '--iters', '10', '--probe-split',
              'probe')
    with pytest.raises(ValueError, match='must be held out'):
        _plan(tmp_path, [MAE_DEMO], '--iters', '10', '--probe-split',
              'val')


def test_a_wrapped_train_dataset_is_refused(tmp_path):
    cfg = Config.fromfile(MAE_DEMO)
    cfg.train_dataloader.dataset = dict(type='RepeatDataset', times=2,
                                        dataset=cfg.train_dataloader.dataset)
    path = str(tmp_path / 'wrapped.py')
    cfg.dump(path)
    with pytest.raises(ValueError, match='RepeatDataset'):
        _plan(tmp_path, [path], '--iters', '10')


def test_options_that_cfg_options_cannot_carry_are_refused():
    with pytest.raises(ValueError, match='white space'):
        study.render_options({'train_dataloader.dataset.data_root': '/a b'})
    with pytest.raises(ValueError, match='would not carry'):
        study.render_options({'experiment_name': '1e3'})  # parsed as float
    assert study.render_options({'a': '', 'b': False, 'c': 3}) == [
        'a=', 'b=False', 'c=3']


def test_subprocess_steps_log_and_fail_with_the_log_tail(tmp_path):
    script = tmp_path / 'tool.py'
    script.write_text(
        'import os, sys\n'
        'print("cwd", os.getcwd())\n'
        'print("path", os.environ.get("PYTHONPATH", "").split(os.pathsep)[0])\n'
        'sys.exit(int(sys.argv[1]))\n')
    log = str(tmp_path / 'step.log')
    study.run_command([sys.executable, str(script), '0'], log, root=REPO)
    text = open(log).read()
    assert f'cwd {REPO}' in text and f'path {REPO}' in text
    with pytest.raises(RuntimeError, match=r'failed \(exit 3\)'):
        study.run_command([sys.executable, str(script), '3'], log)
    with pytest.raises(RuntimeError, match='exited with 3'):
        study.run_command([sys.executable, str(script), '3'], None,
                          in_process=True)
