"""tools/benchmark and tools/analysis_tools/benchmark.py on tiny models
(CPU, 1-2 steps; no timing is asserted)."""
import glob
import json
import os.path as osp
import subprocess
import sys

import pytest
import torch
from conftest import REPO, load_tool
from mmengine.config import Config

sys.path.insert(0, osp.join(REPO, 'tools'))  # tools/benchmark, not installed
from benchmark import (TrainStepVariant, crop_size,  # noqa: E402
                       load_config, set_precision, summarise,
                       time_interleaved)

CPU = torch.device('cpu')

MODEL = """
model = dict(
    type='{model}',
    backbone=dict(type='{backbone}', arch=dict(embed_dims=32, num_layers=2,
                  num_heads=2, feedforward_channels=64), img_size=16,
                  patch_size=4, mask_ratio=0.75),
    neck=dict(type='MAEPretrainDecoder', num_patches=16, patch_size=4,
              in_chans=3, embed_dim=32, decoder_embed_dim=32,
              decoder_depth=1, decoder_num_heads=2, mlp_ratio=4.),
    head=dict(type='MAEPretrainHead', norm_pix=True, patch_size=4,
              loss=dict(type='PixelReconstructionLoss', criterion='L2')),
    init_cfg=[dict(type='Xavier', layer='Linear', distribution='uniform'),
              dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0)])
data_preprocessor = dict(type='SelfSupDataPreprocessor',
                         mean=[123.675, 116.28, 103.53],
                         std=[58.395, 57.12, 57.375], to_rgb=True)
train_dataloader = dict(batch_size=4, dataset=dict(
    type='ImageFolder', data_root='unused', pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='RandomResizedCrop', scale=16),
        dict(type='PackInputs')]))
optim_wrapper = dict(type='AmpOptimWrapper', loss_scale='dynamic',
                     optimizer=dict(type='AdamW', lr=1e-3))
"""


def tiny_configs(tmp_path):
    """This package's MaskedMAE and mmpretrain's MAE, the same tiny ViT."""
    ours = tmp_path / 'ours_tiny.py'
    ours.write_text("default_scope = 'mlmask_mm'\n" + MODEL.format(
        model='MaskedMAE', backbone='MaskableViT'))
    theirs = tmp_path / 'mmpretrain_tiny.py'
    theirs.write_text("default_scope = 'mmpretrain'\n" + MODEL.format(
        model='MAE', backbone='MAEViT'))
    return str(ours), str(theirs)


def demo_config(folder: str, variant: str = '') -> str:
    """The method's demo config (found by name, whatever its full name);
    ``variant``: the suffix of a variant, e.g. ``'_iteration'``."""
    found = sorted(
        glob.glob(osp.join(REPO, 'configs', folder, f'*demo{variant}.py')))
    assert found, f'no demo config in configs/{folder}'
    return found[0]


class Fake:
    """A variant that records what it is asked to do."""

    def __init__(self, name, log, cycle=1, allocate_mb=0):
        self.name, self.log, self.cycle = name, log, cycle
        self.allocate_mb = allocate_mb
        self.warm = False

    def build(self):
        self.log.append((self.name, 'build'))
        # touched pages count in the resident set
        self.blob = torch.ones(self.allocate_mb * 2**18) \
            if self.allocate_mb else None

    def end_warmup(self):
        self.warm = True
        self.log.append((self.name, 'end_warmup'))

    def run(self, count):
        assert count == self.cycle
        self.log.append((self.name, 'timed' if self.warm else 'warmup'))


def test_time_interleaved_rotates_and_counts_whole_cycles():
    log = []
    variants = dict(a=Fake('a', log), b=Fake('b', log, cycle=2),
                    c=Fake('c', log))
    out = time_interleaved(variants, CPU, iters=3, warmup=1)
    # each built and warmed up in turn (whole cycles: b warms up 2 steps)
    assert log[:9] == [(n, e) for n in 'abc'
                       for e in ('build', 'warmup', 'end_warmup')]
    timed = [n for n, e in log[9:]]
    assert all(e == 'timed' for _, e in log[9:])
    # turn t starts at variant t mod 3; b stops after 2 cycles (4 >= 3)
    assert timed == ['a', 'b', 'c', 'b', 'c', 'a', 'c', 'a']
    assert [out[n]['steps'] for n in 'abc'] == [3, 4, 3]
    assert [len(out[n]['times']) for n in 'abc'] == [3, 2, 3]
    for n in 'abc':
        assert out[n]['first_step_s'] > 0 and out[n]['build_s'] >= 0


@pytest.mark.parametrize('iters, warmup', [(0, 1), (1, 0)])
def test_time_interleaved_rejects(iters, warmup):
    with pytest.raises(ValueError, match='iters' if not iters else 'warmup'):
        time_interleaved(dict(a=Fake('a', [])), CPU, iters, warmup)


@pytest.mark.skipif(not osp.exists('/proc/self/clear_refs'),
                    reason='per-variant CPU peak needs Linux clear_refs')
def test_peak_memory_cpu_is_per_variant():
    """In a fresh interpreter, as the CLI runs: the CPU figure is a lower
    bound (resident memory freed earlier and reused is not counted), so
    after the rest of the suite this process may hold enough freed memory
    for 64 MiB to add nothing."""
    code = (
        'import json, sys\n'
        f'sys.path[:0] = [{osp.join(REPO, "tools")!r}, '
        f'{osp.join(REPO, "tests")!r}, '
        f'{osp.dirname(osp.abspath(__file__))!r}]\n'
        'import torch\n'
        'from benchmark import PeakMemory, time_interleaved\n'
        'from test_benchmark import Fake\n'
        'out = time_interleaved(dict(small=Fake("small", []), '
        'big=Fake("big", [], allocate_mb=64), after=Fake("after", [])), '
        'torch.device("cpu"), iters=1, warmup=1)\n'
        'print(json.dumps(dict(kind=PeakMemory(torch.device("cpu")).kind, '
        '**{k: v["peak_mem_mb"] for k, v in out.items()})))\n')
    proc = subprocess.run([sys.executable, '-c', code], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out['big'] > 60
    assert out['small'] < 30
    assert out['after'] < 30  # big's 64 MiB not counted again
    assert 'VmHWM' in out['kind']


def test_summarise():
    res = summarise(dict(times=[0.3, 0.1, 0.2], steps=3, first_step_s=1.0,
                         build_s=0.5, peak_mem_mb=7.0), batch_size=4)
    assert res['ms_per_step'] == pytest.approx(200)
    assert res['ms_per_step_mean'] == pytest.approx(200)
    assert (res['ms_per_step_min'], res['ms_per_step_max']) == \
        pytest.approx((100, 300))
    assert res['images_per_s'] == pytest.approx(20)
    assert (res['timed_steps'], res['timed_cycles']) == (3, 3)
    assert res['first_step_ms'] == pytest.approx(1000)


def test_crop_size(tmp_path):
    ours, _ = tiny_configs(tmp_path)
    cfg = Config.fromfile(ours)
    assert crop_size(cfg) == 16
    cfg.train_dataloader.dataset.pipeline[1] = dict(type='CenterCrop',
                                                    crop_size=(8, 8))
    assert crop_size(cfg) == 8
    cfg.train_dataloader.dataset.pipeline = [dict(type='LoadImageFromFile')]
    assert crop_size(cfg) == 16  # model.backbone.img_size
    del cfg.model.backbone['img_size']
    with pytest.raises(ValueError, match='crop size'):
        crop_size(cfg)


def test_set_precision(tmp_path):
    ours, _ = tiny_configs(tmp_path)
    cfg = Config.fromfile(ours)
    assert set_precision(cfg, 'fp32', CPU) == 'fp32'
    assert cfg.optim_wrapper.type == 'OptimWrapper'
    assert 'loss_scale' not in cfg.optim_wrapper
    with pytest.raises(ValueError, match='AmpOptimWrapper'):
        set_precision(Config.fromfile(ours), 'bf16', CPU)
    # the way a user gets bf16 (no GPU needed to rewrite the config)
    cfg = Config.fromfile(ours)
    assert set_precision(cfg, 'bf16', torch.device('cuda')) == \
        'AmpOptimWrapper(dtype=bfloat16)'
    assert (cfg.optim_wrapper.type, cfg.optim_wrapper.dtype) == \
        ('AmpOptimWrapper', 'bfloat16')
    # CL-MAE: every part of the multi-part wrapper
    cfg = Config.fromfile(demo_config('cl_mae'))
    set_precision(cfg, 'bf16', torch.device('cuda'))
    parts = [v for v in cfg.optim_wrapper.values()
             if isinstance(v, dict) and 'optimizer' in v]
    assert len(parts) == 2
    assert all(p['dtype'] == 'bfloat16' for p in parts)
    # MLO-MAE: its own switch, the optimizers stay fp32
    cfg = Config.fromfile(demo_config('mlo_mae'))
    assert set_precision(cfg, 'bf16', CPU) == 'model.amp=bf16'
    assert cfg.model.amp == 'bf16'
    assert all(v.get('type', 'OptimWrapper') == 'OptimWrapper'
               for v in cfg.optim_wrapper.values() if isinstance(v, dict))


def test_variants_start_from_the_first_ones_weights(tmp_path):
    ours, theirs = tiny_configs(tmp_path)
    reference = {}
    first = TrainStepVariant('a', load_config(theirs), CPU, seed=0,
                             reference=reference)
    first.build()
    start = {k: v.clone() for k, v in first.model.state_dict().items()}
    first.run(1)  # trained weights are not what the next one gets
    # another seed: other random weights, unless they are shared
    shared = TrainStepVariant('b', load_config(ours), CPU, seed=1,
                              reference=reference)
    alone = TrainStepVariant('c', load_config(ours), CPU, seed=1)
    shared.build()
    alone.build()
    assert shared.shared == dict(source='a', copied=len(start),
                                 total=len(start))
    for k, v in shared.model.state_dict().items():
        assert torch.equal(v, start[k]), k
    assert not torch.equal(alone.model.state_dict()[
        'backbone.layers.0.ffn.layers.0.0.weight'],
        start['backbone.layers.0.ffn.layers.0.0.weight'])


def test_cli_ours_vs_mmpretrain(tmp_path, capsys):
    ours, theirs = tiny_configs(tmp_path)
    out_file = tmp_path / 'out' / 'bench.json'
    out = load_tool('analysis_tools/benchmark').main([
        theirs, ours, '--batch-size', '2', '--iters', '2', '--warmup', '1',
        '--device', 'cpu', '--flops', '--out', str(out_file)])
    printed = capsys.readouterr().out
    assert json.loads(out_file.read_text()) == json.loads(json.dumps(out))
    assert out['table'][0] in printed and 'mmpretrain_tiny' in printed
    a, b = out['variants']['mmpretrain_tiny'], out['variants']['ours_tiny']
    assert (a['model'], b['model']) == ('MAE', 'MaskedMAE')
    assert out['ratios_vs_first']['mmpretrain_tiny'] == 1
    assert out['ratios_vs_first']['ours_tiny'] == \
        b['ms_per_step'] / a['ms_per_step']
    # the same weights and random state: RandomMasker reproduces
    # mmpretrain's masks, so the first two steps are the same
    assert b['weights_from'] == dict(source='mmpretrain_tiny', copied=a[
        'weights_from']['copied'], total=a['weights_from']['total'])
    assert b['first_step_loss'] == a['first_step_loss']
    assert b['last_step_loss'] == a['last_step_loss']
    for v in (a, b):
        assert (v['img_size'], v['batch_size'], v['timed_steps']) == (16, 2,
                                                                      2)
        assert v['precision'] == 'fp32' and v['step'] == 'train_step'
        # CPU peak RSS above the RSS before the build: a lower bound, 0 when
        # the build reused memory the process already held
        assert v['ms_per_step'] > 0 and v['peak_mem_mb'] >= 0
        assert v['gflop_per_step'] > 0
    assert out['flop_ratios_vs_first']['ours_tiny'] == pytest.approx(1,
                                                                      rel=1e-3)


def test_cli_flops_only(tmp_path, capsys):
    ours, theirs = tiny_configs(tmp_path)
    out = load_tool('analysis_tools/benchmark').main([
        theirs, ours, '--cfg-options-of', '2', 'model.neck.decoder_depth=2',
        '--flops-only', '--batch-size', '2', '--device', 'cpu'])
    capsys.readouterr()
    a, b = out['variants']['mmpretrain_tiny'], out['variants']['ours_tiny']
    assert 'ms_per_step' not in a and a['gflop_per_step'] > 0
    # one more decoder block: more FLOPs, nothing timed
    assert out['flop_ratios_vs_first']['ours_tiny'] > 1
    assert b['gflop_per_step'] > a['gflop_per_step']


def test_cli_bad_input(tmp_path):
    tool = load_tool('analysis_tools/benchmark')
    ours, theirs = tiny_configs(tmp_path)
    for argv in (['--warmup', '0'], ['--iters', '0'],
                 ['--cfg-options-of', '3', 'a=1'],
                 ['--cfg-options-of', 'x', 'a=1']):
        with pytest.raises(SystemExit):
            tool.parse_args([ours, theirs] + argv)
    with pytest.raises(FileNotFoundError, match='nowhere.py'):
        tool.main([str(tmp_path / 'nowhere.py'), '--device', 'cpu'])
    with pytest.raises(ValueError, match='AmpOptimWrapper'):
        tool.main([ours, '--amp', 'bf16', '--device', 'cpu'])


@pytest.mark.slow
def test_cli_every_method(capsys):
    """One run over plain MAE, two Self-Guided modes (masks generated once,
    relevance every iteration), CL-MAE (module step
    every 2nd step) and MLO-MAE (level 3 every 2nd outer iteration)."""
    mae = demo_config('mae')
    configs = [mae, demo_config('sg_mae'),
               demo_config('sg_mae', '_iteration'),
               demo_config('cl_mae'), demo_config('mlo_mae'), mae]
    out = load_tool('analysis_tools/benchmark').main([
        *configs, '--batch-size', '2', '--iters', '2', '--warmup', '1',
        '--device', 'cpu', '--cfg-options', 'model.backbone.arch.num_layers=2',
        'model.neck.decoder_depth=1', '--cfg-options-of', '4',
        'model.masker_update_interval=2', 'model.masker.num_layers=1',
        '--cfg-options-of', '5', 'train_cfg.masker_update_interval=2',
        'train_cfg.train_split_dataloader.batch_size=2',
        'train_cfg.val_split_dataloader.batch_size=2', '--cfg-options-of', '6',
        'model.masker.type=BlockMasker', '--phases', 'mae_step',
        'masker_step', 'level1_step', 'level2_step', 'level3_step'])
    capsys.readouterr()
    names = list(out['variants'])
    assert len(names) == 6 and names[5] == names[0] + '#6'
    v = [out['variants'][n] for n in names]
    assert [x['step'] for x in v] == ['train_step'] * 4 + ['outer_step',
                                                           'train_step']
    assert [x['steps_per_cycle'] for x in v] == [1, 1, 1, 2, 2, 1]
    assert [x['timed_steps'] for x in v] == [2] * 6
    # Self-Guided: the informed masker is on, in both modes
    for x in v[1:3]:
        assert x['sg_solver_products'] > 0
        assert x['first_step_loss'] != v[0]['first_step_loss']
    assert v[1]['first_step_loss'] != v[2]['first_step_loss']
    assert 'sg_solver_products' not in v[0]
    # the options reach only their config
    assert v[5]['cfg_options'] == {'model.backbone.arch.num_layers': 2,
                                   'model.neck.decoder_depth': 1,
                                   'model.masker.type': 'BlockMasker'}
    assert v[5]['first_step_loss'] != v[0]['first_step_loss']
    # CL-MAE: the MAE step every step, the module step every 2nd
    assert v[3]['phases']['mae_step']['calls_per_step'] == 1
    assert v[3]['phases']['masker_step']['calls_per_step'] == 0.5
    # MLO-MAE: levels 1 and 2 every outer iteration, level 3 every 2nd
    ph = v[4]['phases']
    assert ph['level1_step']['calls_per_step'] == v[4]['mae_steps_per_step']
    assert ph['level2_step']['calls_per_step'] == 1
    assert ph['level3_step']['calls_per_step'] == 0.5
    assert v[4]['labelled_batch_sizes'] == [2, 2]
    assert 'phases' not in v[0]
    for x in v:
        assert x['ms_per_step'] > 0 and x['params_m'] > 0


def test_cli_fast_path_takes_the_same_steps(tmp_path):
    """Ours on the fast modules (eager; fp32 on the CPU) against
    mmpretrain's MAE: same weights, same masks, the same first two
    losses (to float32 rounding), and the report names the modules."""
    ours, theirs = tiny_configs(tmp_path)
    out = load_tool('analysis_tools/benchmark').main([
        theirs, ours, '--cfg-options-of', '2',
        'model.backbone.type=FastMAEViT',
        'model.neck.type=FastMAEPretrainDecoder',
        'optim_wrapper.type=BF16AmpOptimWrapper',
        'optim_wrapper.optimizer.fused=True',
        '--batch-size', '2', '--iters', '2', '--warmup', '1',
        '--device', 'cpu'])
    a, b = out['variants']['mmpretrain_tiny'], out['variants']['ours_tiny']
    assert b['modules'] == dict(
        backbone="FastMAEViT (compile='cuda')",
        neck="FastMAEPretrainDecoder (compile='cuda')")
    assert a['modules'] == dict(backbone='MAEViT', neck='MAEPretrainDecoder')
    assert b['optimizer'] == 'AdamW (fused)' and a['optimizer'] == 'AdamW'
    assert b['precision'] == 'fp32'  # fp32: the Amp wrapper is dropped
    assert b['first_step_loss'] == pytest.approx(a['first_step_loss'],
                                                 rel=1e-6)
    assert b['last_step_loss'] == pytest.approx(a['last_step_loss'],
                                                rel=1e-5)


def test_bf16_keeps_a_configs_amp_wrapper_subclass(tmp_path):
    ours, _ = tiny_configs(tmp_path)
    cfg = Config.fromfile(ours)
    cfg.optim_wrapper.type = 'BF16AmpOptimWrapper'
    assert set_precision(cfg, 'bf16', torch.device('cuda')) == \
        'BF16AmpOptimWrapper(dtype=bfloat16)'
    assert cfg.optim_wrapper.type == 'BF16AmpOptimWrapper'


def test_gpu_fast_path_command():
    """The GPU run of the 'ours, fast path' row: four variants of ViT-B/16
    in one interleaved process, batch 256, bf16; each variant's config
    resolves to the intended modules and optimizer step."""
    acc = load_tool('misc/gpu_acceptance')
    argv = acc.fast_path_benchmark_args(256, 10, '/tmp/x.json')
    args = load_tool('analysis_tools/benchmark').parse_args(argv)
    assert args.configs[0].startswith('mmpretrain::mae/mae_vit-base-p16')
    assert len(args.configs) == 4 and len(set(args.configs[1:])) == 1
    assert (args.batch_size, args.amp, args.compile) == (256, 'bf16', False)
    want = {
        1: ('MaskableViT', 'MAEPretrainDecoder', 'AmpOptimWrapper', False,
            None),
        2: ('FastMAEViT', 'FastMAEPretrainDecoder', 'BF16AmpOptimWrapper',
            True, False),
        3: ('FastMAEViT', 'FastMAEPretrainDecoder', 'BF16AmpOptimWrapper',
            True, True)}
    for i, (backbone, neck, wrapper, fused, compiled) in want.items():
        cfg = load_config(args.configs[i], args.options_of[i])
        assert cfg.model.backbone.type == backbone
        assert cfg.model.neck.type == neck
        assert cfg.optim_wrapper.type == wrapper
        assert cfg.optim_wrapper.optimizer.get('fused', False) is fused
        assert cfg.model.backbone.get('compile') is compiled
        assert cfg.model.neck.get('compile') is compiled
    assert 0 not in args.options_of
