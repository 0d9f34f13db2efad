"""Smoke test of tools/benchmark.py --method sg-mae (seconds on CPU)."""
import json
import math

from test_benchmark import _load_benchmark


def test_sg_benchmark_tiny_cpu(capsys):
    arch = dict(embed_dims=32, num_layers=2, num_heads=2,
                feedforward_channels=64)
    out = _load_benchmark().main([
        '--method', 'sg-mae', '--arch', json.dumps(arch), '--img-size', '16',
        '--patch-size', '4', '--batch-size', '3', '--steps', '1', '--warmup',
        '0', '--device', 'cpu', '--refresh-intervals',
        '1,4', '--sg-masker', '{"max_iters": 7, "tol": 0, "power_steps": 1}'
    ])
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(out))
    variants = out['variants']
    assert set(variants) == {'mae', 'sg_iteration', 'sg_cached'}
    for v in variants.values():
        assert v['ms_per_step'] > 0 and math.isfinite(v['first_step_loss'])
    # the informed masks differ from the random ones: other losses
    assert variants['sg_cached']['first_step_loss'] != \
        variants['mae']['first_step_loss']
    # the masker kwargs reach both modes: tol 0 runs the solver to its cap
    assert out['refresh']['solver_iters'] == 7
    assert out['refresh']['encoder_pass_ms'] > 0
    assert out['refresh']['ncut_and_relevance_ms'] > 0
    assert out['sg_iteration_solver_iters'] == [7]
    base = variants['mae']['ms_per_step']
    cost = out['step_cost_vs_mae']
    assert cost['sg_cached'] == variants['sg_cached']['ms_per_step'] / base
    amortised = out['sg_cached_amortised_vs_mae']
    assert amortised['k=1'] > amortised['k=4'] > cost['sg_cached']
    assert len(out['environment']['load_average']) == 3
