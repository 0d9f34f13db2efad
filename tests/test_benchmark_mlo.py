"""Smoke test of tools/benchmark.py --method mlo-mae on a 2-block ViT."""
import json
import os.path as osp

from conftest import load_tool

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
ARCH = json.dumps(dict(embed_dims=32, num_layers=2, num_heads=2,
                       feedforward_channels=64))


def _load_benchmark():
    return load_tool('benchmark')


def test_benchmark_mlo_mae_tiny_cpu(capsys, tmp_path):
    out_file = tmp_path / 'mlo.json'
    out = _load_benchmark().main([
        '--method', 'mlo-mae', '--arch', ARCH, '--img-size', '16',
        '--patch-size', '4', '--batch-size', '2', '--steps', '1',
        '--warmup', '0', '--device', 'cpu', '--seed', '3',
        '--mlo-intervals', '1,2', '--mlo-num-classes', '3', '--mlo-flops',
        '--out', str(out_file)
    ])
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(out))
    assert json.loads(out_file.read_text()) == json.loads(json.dumps(out))
    names = {'plain_mae', 'mlo_exact_n1', 'mlo_exact_n2',
             'mlo_finite_difference_n1', 'mlo_finite_difference_n2',
             'betty_fp32_fd_n1'}
    assert set(out['variants']) == names
    for v in out['variants'].values():
        assert v['ms_per_step'] > 0 and v['peak_mem_mb'] > 0
    # every MLO variant starts from the plain MAE's weights and batch: the
    # same first reconstruction loss up to the probability weighting (p ≈
    # 0.5 at init, so it is smaller)
    plain_loss = out['variants']['plain_mae']['first_step_loss']
    for name in names - {'plain_mae'}:
        assert 0 < out['variants'][name]['first_step_loss'] < plain_loss
        assert out['ratio_vs_plain_same_mae_steps'][name] > 0
    levels = out['level_ms_per_outer_iteration']['mlo_exact_n1']
    assert levels['level1'] > 0 and levels['level3'] > 0
    # level 3 runs in one of two iterations with n = 2
    assert set(out['speedup_vs_betty']) == {'mlo_exact_n1',
                                            'mlo_finite_difference_n1'}
    flops = out['flops']
    assert set(flops['gflop_per_step']) == names
    ratio = flops['ratio_vs_plain_same_mae_steps']
    # deterministic counts: n = 2 costs less than n = 1, the betty-style
    # head term (two encoder backwards) more than the double backward
    assert ratio['mlo_exact_n2'] < ratio['mlo_exact_n1']
    assert ratio['mlo_finite_difference_n1'] < ratio['betty_fp32_fd_n1']
    assert all(r > 1 for r in ratio.values())
    assert isinstance(out['goals'], dict) and out['goals']
