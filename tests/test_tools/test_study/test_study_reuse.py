"""A study spread over machines: --reuse takes the finished runs of an
earlier study.json instead of running them again, and the tables are
written after every run (tools/study/reuse.py)."""
import json
import os
import os.path as osp
import sys

import pytest

from conftest import REPO, make_image_folder

sys.path.insert(0, osp.join(REPO, 'tools'))  # tools/study, not installed
import study  # noqa: E402

MAE_DEMO = osp.join(REPO, 'configs', 'mae', 'mae_vit-tiny-p4_demo.py')
MLO_10K = osp.join(REPO, 'configs', 'mlo_mae',
                   'mlo-mae_vit-tiny-p4_1xb64-coslr-10k_cifar10.py')
COMMON = ['--labels', 'mae', 'mlo', '--iters', '100', '--cost', 'mae=1',
          'mlo=5', '--continue', 'mlo=mae@90', '--ckpt-interval', '10',
          '--probes', 'fewshot', '--shots', '1', '4', '--fewshot-seeds', '2',
          '--random-init', '--no-plot']


def _study(tmp_path, *extra, out='out'):
    data = str(tmp_path / 'data')
    if not osp.isdir(data):
        make_image_folder(osp.join(data, 'train'), ('a', 'b', 'c'), 14,
                          seed=1)
        make_image_folder(osp.join(data, 'val'), ('a', 'b', 'c'), 3, seed=2)
    return study.Study(study.parse_args([
        MAE_DEMO, MLO_10K, '--data', data, '--out-dir', str(tmp_path / out),
        *COMMON, *extra]))


def _earlier_json(tmp_path, seeds=('0',), edit=None):
    """The study.json an earlier machine wrote: every run finished, with
    recognisable figures (seed*10 + index)."""
    s = _study(tmp_path, '--seeds', *seeds, out='earlier')
    records = []
    for i, run in enumerate(s.runs):
        rec = s._collect(run)
        rec['pretrain_seconds'] = None if run.get('random_init') else 100.0
        rec['metrics'] = {'fewshot_1shot_top1': 10.0 * run['seed'] + i,
                          'fewshot_4shot_top1': 50.0 + i}
        records.append(rec)
    result = dict(date='earlier', settings=s.settings(),
                  summary=s.summary(records), runs=records)
    if edit:
        edit(result)
    path = str(tmp_path / 'earlier_study.json')
    with open(path, 'w') as f:
        json.dump(result, f)
    return path


def _no_steps(s, calls):
    def step(cmd, done, log):
        calls.append(cmd)
        return None
    s._step = step


def test_reused_runs_do_not_run_and_keep_their_figures(tmp_path):
    earlier = _earlier_json(tmp_path, seeds=('0',))
    # seed 0 (all three rows) comes from the earlier machine; seed 1 runs
    s = _study(tmp_path, '--seeds', '0', '1', '--reuse', earlier)
    reused = {(r['label'], r['seed']) for r in s.runs if r.get('reused')}
    assert reused == {('mae', 0), ('mlo', 0), ('random-init', 0)}
    calls = []
    _no_steps(s, calls)
    result = s.run()
    stepped = ' '.join(' '.join(map(str, c)) for c in calls)
    assert 'seed1' in stepped and 'seed0' not in stepped
    runs = {(r['label'], r['seed']): r for r in result['runs']}
    assert runs['mae', 0]['metrics']['fewshot_1shot_top1'] == 0.0
    assert runs['mlo', 0]['metrics']['fewshot_1shot_top1'] == 1.0
    assert runs['mae', 0]['complete'] and not runs['mae', 1]['complete']
    assert runs['mae', 1]['metrics'] == {}
    rows = {r['label']: r for r in result['summary']}
    assert rows['mlo']['metrics']['fewshot_4shot_top1']['values'] == [51.0,
                                                                      None]
    commands = open(tmp_path / 'out' / 'commands.sh').read()
    assert f'# mae seed 0: results reused from {earlier}' in commands


@pytest.mark.parametrize('what', ['length', 'seed', 'incomplete', 'config'])
def test_only_the_same_finished_run_is_reused(tmp_path, what):
    def edit(result):
        rec = next(r for r in result['runs'] if r['label'] == 'mae')
        if what == 'length':
            rec['iterations'] = rec['length'] = 99
        elif what == 'seed':
            rec['seed'] = 1
        elif what == 'incomplete':
            rec['metrics']['fewshot_4shot_top1'] = None
        else:
            rec['config'] = 'configs/mae/another.py'
    earlier = _earlier_json(tmp_path, edit=edit)
    s = _study(tmp_path, '--seeds', '0', '--reuse', earlier, '--dry-run')
    runs = {r['label']: r for r in s.runs}
    assert not runs['mae'].get('reused')
    assert runs['random-init'].get('reused')


@pytest.mark.parametrize('extra, error', [
    (['--shots', '1', '8'], 'shots'),
    (['--fewshot-feature', 'mean_patch'], 'fewshot_feature'),
    (['--fewshot-seeds', '3'], 'fewshot_seeds'),
    (['--probes', 'fewshot', 'linear'], 'probes'),
])
def test_a_json_measured_differently_is_refused(tmp_path, extra, error):
    earlier = _earlier_json(tmp_path)
    with pytest.raises(ValueError, match=error):
        _study(tmp_path, '--seeds', '0', '--reuse', earlier, *extra)


def test_a_continued_run_needs_its_base_checkpoint_here(tmp_path):
    """The base (MAE seed 0) is reused, the continued run is not: its
    iteration-90 checkpoint is on the earlier machine only."""
    def edit(result):
        result['runs'] = [r for r in result['runs'] if r['label'] != 'mlo']
    earlier = _earlier_json(tmp_path, edit=edit)
    with pytest.raises(ValueError, match='mae seed 0 is reused'):
        _study(tmp_path, '--seeds', '0', '--reuse', earlier)
    # with the checkpoint here it trains from it
    s = _study(tmp_path, '--seeds', '0', '--reuse', earlier, '--dry-run')
    mlo = next(r for r in s.runs if r['label'] == 'mlo')
    os.makedirs(osp.dirname(mlo['start_from']))
    open(mlo['start_from'], 'w').close()
    s = _study(tmp_path, '--seeds', '0', '--reuse', earlier)
    assert not next(r for r in s.runs if r['label'] == 'mlo').get('reused')


def test_tables_are_written_after_every_run(tmp_path):
    s = _study(tmp_path, '--seeds', '0')
    _no_steps(s, [])
    seen = []
    write = s.write_results

    def spy(date=None):
        seen.append(osp.isfile(tmp_path / 'out' / 'study.json'))
        return write(date)
    s.write_results = spy
    s.run()
    # after each of the 3 runs, then the final table
    assert len(seen) == 4


SG_DEMO = osp.join(REPO, 'configs', 'sg_mae', 'sg-mae_vit-tiny-p4_demo.py')


def test_mask_content_step_per_trained_run(tmp_path):
    """--mask-content: the final checkpoint of every trained run (not the
    random init) on images of the probe part; Self-Guided MAE's masks
    from its final model (its cache holds only its training images)."""
    data = str(tmp_path / 'data')
    make_image_folder(osp.join(data, 'train'), ('a', 'b', 'c'), 14, seed=1)
    make_image_folder(osp.join(data, 'val'), ('a', 'b', 'c'), 3, seed=2)
    s = study.Study(study.parse_args([
        MAE_DEMO, SG_DEMO, '--labels', 'mae', 'sg', '--data', data,
        '--iters', '100', '--seeds', '3', '--probes', '--random-init',
        '--mask-content', '32', '--out-dir', str(tmp_path / 'out'),
        '--dry-run']))
    s.run()
    cmds = [c for c in s.commands if 'analyze_mask_content.py' in c]
    assert len(cmds) == 2
    for cmd, run in zip(cmds, s.runs):
        assert f'{run["checkpoint"]} --data {data}/train ' in cmd
        assert '--num-images 32 --seed 3 ' in cmd
        assert ('model.generation=iteration' in cmd) == (run['label'] ==
                                                         'sg')


def test_mask_content_figures_in_the_tables(tmp_path):
    s = _study(tmp_path, '--seeds', '0', '--mask-content')
    mae = s.runs[0]
    os.makedirs(mae['dir'])
    figures = {k: 0.5 + i / 100 for i, k in enumerate(study.CONTENT_KEYS)}
    with open(osp.join(mae['dir'], 'mask_content.json'), 'w') as f:
        json.dump(dict(figures, checkpoint='x', never_kept=0), f)
    _no_steps(s, [])
    result = s.run()
    assert result['runs'][0]['mask_content'] == figures
    assert 'mask_content' not in result['runs'][1]
    table = open(tmp_path / 'out' / 'study.md').read()
    assert '| mae | 0 | 0.500 (0.510) | 0.520 (0.530) | 0.540 | ' \
           '0.550 (0.560) | 0.570 | 0.580 |' in table
