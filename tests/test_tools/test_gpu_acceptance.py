"""tools/misc/gpu_acceptance.py on a machine without a GPU: what it can run
it runs (ViT-tiny demo configs, conversion), what needs a GPU it skips with
the reason, and the report has the documented format."""
import json
import os.path as osp

import pytest

from conftest import load_tool

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def report(tmp_path_factory):
    tool = load_tool('misc/gpu_acceptance')
    out = tmp_path_factory.mktemp('acceptance')
    rc = tool.main(['--out', str(out), '--tiny', '--methods', 'mae',
                    '--iters', '1', '--batch-size', '2',
                    '--skip', 'benchmark'])
    with open(out / 'report.json') as f:
        return rc, json.load(f), out


def test_report_format(report):
    rc, data, _ = report
    assert rc == 0
    for key in ('date', 'host', 'mode', 'steps', 'summary', 'elapsed_s'):
        assert key in data
    names = [s['name'] for s in data['steps']]
    assert names[:4] == ['environment', 'mmcv_ops', 'data', 'train_mae']
    for step in data['steps']:
        assert step['status'] in ('ok', 'failed', 'skipped')
        assert isinstance(step['seconds'], float)
        if step['status'] != 'ok' or step['name'] == 'mmcv_ops':
            assert step.get('reason')
    assert data['summary']['failed'] == 0
    assert sum(data['summary'].values()) == len(names)


def test_trains_converts_and_skips_gpu_steps(report):
    _, data, out = report
    steps = {s['name']: s for s in data['steps']}
    train = steps['train_mae']
    assert train['status'] == 'ok'
    assert train['last_log']['loss'] > 0
    assert osp.exists(train['checkpoint'])
    for step, target in (('convert', 'mmseg-mae'),
                         ('convert_vitdet', 'vitdet')):
        assert steps[step]['status'] == 'ok'
        assert osp.exists(out / f'backbone_{target}.pth')
    assert steps['benchmark']['reason'] == '--skip'
    for name in ('dist_train', 'transfer_upernet', 'transfer_mask_rcnn'):
        assert steps[name]['status'] == 'skipped'
        assert 'GPU' in steps[name]['reason']


def test_refuses_a_stack_that_cannot_import(monkeypatch, tmp_path):
    tool = load_tool('misc/gpu_acceptance')
    real = tool.importlib.util.find_spec
    monkeypatch.setattr(
        tool.importlib.util, 'find_spec',
        lambda name, *a: object() if name == 'transformers' else real(name,
                                                                      *a))
    assert tool.stack_problem() and 'transformers' in tool.stack_problem()
