"""Smoke test of tools/benchmark.py on a 2-block ViT (seconds on CPU)."""
import json
import os.path as osp

from conftest import load_tool

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _load_benchmark():
    return load_tool('benchmark')


def test_benchmark_tiny_cpu(capsys):
    arch = dict(embed_dims=32, num_layers=2, num_heads=2,
                feedforward_channels=64)
    out = _load_benchmark().main([
        '--arch', json.dumps(arch), '--img-size', '16', '--patch-size', '4',
        '--batch-size', '2', '--steps', '1', '--warmup', '0', '--device',
        'cpu', '--mask-reps', '2', '--seed', '3'
    ])
    # the printed JSON is the returned dict
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(out))
    variants = out['variants']
    assert set(variants) == {'ours_eager', 'mmpretrain_eager'}
    for v in variants.values():
        assert v['images_per_s'] > 0
        assert v['ms_per_step'] > 0
        assert v['peak_mem_mb'] > 0
    # same weights, same seed -> the same random masks and the same loss
    assert (variants['ours_eager']['first_step_loss'] ==
            variants['mmpretrain_eager']['first_step_loss'])
    assert out['checks']['first_step_loss_abs_diff_eager'] == 0
    assert out['ratios_images_per_s_ours_over_mmpretrain']['eager'] > 0
    assert out['masking']['ours_masker_ms'] > 0
    assert out['masking']['mmpretrain_random_masking_ms'] > 0
    assert out['config']['decoder'] == dict(dim=32, depth=1, heads=1)
