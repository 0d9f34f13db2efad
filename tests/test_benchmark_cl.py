"""Smoke test of ``tools/benchmark.py --method cl-mae`` (seconds on CPU)."""
import json
import os.path as osp

import pytest

from conftest import load_tool

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY = ['--arch', json.dumps(dict(embed_dims=32, num_layers=2, num_heads=2,
                                  feedforward_channels=64)),
        '--img-size', '16', '--patch-size', '4', '--device', 'cpu',
        '--seed', '3', '--method', 'cl-mae']


def _load_benchmark():
    return load_tool('benchmark')


def test_cl_mae_benchmark_tiny_cpu(capsys):
    out = _load_benchmark().main(TINY + [
        '--batch-size', '4', '--steps', '3', '--warmup', '1',
        '--intervals', '1', '2', '--masker-layers', '1',
        '--masker-dims', '16', '--masker-batch-sizes', '0', '2',
        '--breakdown'])
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(out))
    assert out['method'] == 'cl-mae'
    # steps and warm-up rounded up to whole cycles of every n
    assert (out['config']['steps'], out['config']['warmup']) == (4, 2)
    variants = out['variants']
    names = {f'cl-mae_1blk_d16_k{k}_n{n}' for k in ('B', 2) for n in (1, 2)}
    assert set(variants) == names | {'mae'}
    assert set(out['ratios_step_time_vs_mae']) == names
    assert variants['mae']['vs_mae'] == 1
    for name in names:
        v = variants[name]
        n = v['masker_update_interval']
        assert v['timed_steps'] == 4 and v['mae_step_calls'] == 4
        # the module step runs on every n-th iteration only
        assert v['masker_step_calls'] == 4 // n
        assert v['ms_per_step'] > 0 and v['mae_step_ms'] > 0
        assert v['masker_step_ms'] > 0 and v['masker_forward_nograd_ms'] > 0
        assert set(v['parts_ms']) == {
            'embed_ms', 'masker_fwd_nograd_ms', 'mae_fwd_bwd_ms',
            'masker_fwd_bwd_ms', 'soft_fwd_nograd_ms', 'soft_fwd_bwd_ms'}
        assert all(t > 0 for t in v['parts_ms'].values())
        assert v['vs_mae'] == pytest.approx(
            v['ms_per_step'] / variants['mae']['ms_per_step'])
        # goals: n = 1 -> 1.8x; no goal for n = 2
        assert v['goal_vs_mae'] == (1.8 if n == 1 else None)
        assert v['meets_goal'] == (v['vs_mae'] <= 1.8 if n == 1 else None)
    # the same MAE weights and module init in every variant: the first MAE
    # step is the same whatever n and k
    first = {variants[name]['first_step_loss'] for name in names}
    assert len(first) == 1
    env = out['environment']
    assert len(env['loadavg_before']) == 3 and env['threads'] >= 1


@pytest.mark.parametrize('extra, message', [
    (['--intervals', '0'], '--intervals'),
    (['--masker-batch-sizes', '1'], '--masker-batch-sizes'),
    (['--masker-batch-sizes', '8'], '--masker-batch-sizes'),
    (['--masker-layers', '0'], '--masker-layers'),
])
def test_cl_mae_benchmark_rejects_bad_settings(extra, message):
    with pytest.raises(SystemExit, match=message):
        _load_benchmark().main(TINY + ['--batch-size', '4'] + extra)
