"""The study's GPU mode (tools/study/gpu_mode.py): the probe
part, the cost ratios from the benchmark CLI's JSON, the study's arguments
(batch, learning-rate scaling, continuation point) and its refusals."""
import json
import os
import os.path as osp
import sys

import pytest
import torch

from conftest import REPO, make_image_folder

# tools/study and tools/benchmark, not installed
sys.path.insert(0, osp.join(REPO, 'tools'))
import study  # noqa: E402
from study import gpu_mode as study_gpu  # noqa: E402


def test_probe_part_links_the_first_files_of_each_class(tmp_path):
    root = str(tmp_path / 'data')
    make_image_folder(osp.join(root, 'train'), ('a', 'b'), 7, seed=1)
    assert study_gpu.make_probe_split(root, per_class=3) == 6
    for c in ('a', 'b'):
        names = sorted(os.listdir(osp.join(root, 'train', c)))
        probe = sorted(os.listdir(osp.join(root, 'probe', c)))
        assert probe == names[:3]
        assert all(osp.realpath(osp.join(root, 'probe', c, f)) ==
                   osp.realpath(osp.join(root, 'train', c, f)) for f in probe)
    # an existing probe part is kept as it is
    os.remove(osp.join(root, 'probe', 'a', probe[0]))
    assert study_gpu.make_probe_split(root, per_class=3) == 5


def test_probe_part_refuses_a_class_with_too_few_images(tmp_path):
    root = str(tmp_path / 'data')
    make_image_folder(osp.join(root, 'train'), ('a', 'b'), 2, seed=1)
    with pytest.raises(ValueError, match="class 'a' .* 2 images"):
        study_gpu.make_probe_split(root, per_class=3)
    assert not osp.exists(osp.join(root, 'probe'))


def test_benchmark_json_is_a_cost_file(tmp_path):
    """study.py --cost-file reads the benchmark CLI's JSON as written
    (ratios_vs_first keyed by config stem)."""
    path = tmp_path / 'bench.json'
    path.write_text(json.dumps(dict(
        settings={}, variants={'mae_vit-tiny-p4_demo': {'ms_per_step': 4.0}},
        ratios_vs_first={'mae_vit-tiny-p4_demo': 1.0,
                         'cl-mae_vit-tiny-p4_1xb64-coslr-10k_cifar10': 2.5})))
    costs = study.parse_costs((), [str(path)])
    assert costs == {'mae_vit-tiny-p4_demo': 1.0,
                     'cl-mae_vit-tiny-p4_1xb64-coslr-10k_cifar10': 2.5}


def _data(tmp_path):
    root = str(tmp_path / 'data')
    make_image_folder(osp.join(root, 'train'), ('a', 'b', 'c'), 6, seed=1)
    make_image_folder(osp.join(root, 'test'), ('a', 'b', 'c'), 2, seed=2)
    study_gpu.make_probe_split(root, per_class=4)
    costs = tmp_path / 'costs.json'
    costs.write_text(json.dumps(dict(ratios_vs_first={
        'mae_vit-tiny-p4_demo': 1.0,
        'mlo-mae_vit-tiny-p4_1xb64-continued_cifar10': 4.0,
        'sg-mae_vit-tiny-p4_demo': 1.0,
        'cl-mae_vit-tiny-p4_1xb64-coslr-10k_cifar10': 2.0})))
    return root, str(costs)


def test_dry_run_commands(tmp_path):
    root, costs = _data(tmp_path)
    out = str(tmp_path / 'out')
    result = study_gpu.main([root, '--out-dir', out, '--iters', '1000',
                             '--cost-file', costs, '--dry-run'])
    cmds = result['commands']
    train = [c for c in cmds if '/tools/train.py' in c and 'pretrain' in c]
    assert len(train) == 8  # 4 strategies x 2 seeds
    for c in train:
        assert 'train_dataloader.batch_size=256' in c
        assert 'auto_scale_lr.base_batch_size=64' in c
        assert 'auto_scale_lr.enable=True' in c
    iters = {c.split('experiment_name=')[1].split()[0]:
             c.split('train_cfg.max_iters=')[1].split()[0] for c in train}
    # MAE 1000; CL 1000 / 2; MLO the last 10 % of MAE's budget / 4
    assert iters['mae_iters1000_seed0'] == '1000'
    assert iters['cl-mae_iters500_seed1'] == '500'
    mlo = [c for c in train if 'mlo-mae' in c]
    assert all('mae/iters1000_seed' in c.split('load_from=')[1] and
               c.split('load_from=')[1].split()[0].endswith('iter_900.pth')
               for c in mlo)
    assert all('max_iters=25 ' in c for c in mlo)
    fewshot = [c for c in cmds if 'fewshot.py' in c]
    assert len(fewshot) == 10 and all('--device cuda' in c and
                                      '--feature mean_patch' in c
                                      for c in fewshot)
    content = [c for c in cmds if 'analyze_mask_content.py' in c]
    assert len(content) == 8 and all('--num-images 256' in c
                                     for c in content)
    record = json.load(open(osp.join(out, 'study_gpu.json')))
    assert record['dry_run'] and '--in-process' in record['study_args']


def test_scaled_learning_rates_of_every_part(tmp_path):
    """The GPU mode's options scale each part's lr by 256 / 64 (mmengine's
    auto_scale_lr on an OptimWrapperDict: CL-MAE's MAE and module)."""
    from mmengine.config import Config
    from mmengine.runner import Runner
    cfg = Config.fromfile(osp.join(
        REPO, 'configs', 'cl_mae',
        'cl-mae_vit-tiny-p4_1xb64-coslr-10k_cifar10.py'))
    argv = study_gpu.study_argv('d', 'o', 'c.json', 1000, 256, [0], 1,
                                'cuda', 0)
    options = argv[argv.index('--cfg-options') + 1:argv.index('--continue')]
    cfg.merge_from_dict(dict(o.split('=') for o in options))
    cfg.auto_scale_lr.enable = cfg.auto_scale_lr.enable == 'True'
    cfg.auto_scale_lr.base_batch_size = int(cfg.auto_scale_lr.base_batch_size)
    cfg.train_dataloader.batch_size = int(cfg.train_dataloader.batch_size)
    cfg.work_dir = str(tmp_path)
    runner = Runner.from_cfg(cfg)
    wrapper = runner.build_optim_wrapper(cfg.optim_wrapper)
    before = {k: [g['lr'] for g in w.optimizer.param_groups]
              for k, w in wrapper.items()}
    runner.scale_lr(wrapper, runner.auto_scale_lr)
    assert set(before) == {'mae', 'masker'}
    for k, w in wrapper.items():
        assert [g['lr'] for g in w.optimizer.param_groups] == \
            pytest.approx([4 * lr for lr in before[k]])


def test_refusals(tmp_path):
    root, costs = _data(tmp_path)
    with pytest.raises(ValueError, match='--dry-run needs --cost-file'):
        study_gpu.main([root, '--dry-run'])
    with pytest.raises(ValueError, match='multiple of 10.*1005'):
        study_gpu.main([root, '--out-dir', str(tmp_path / 'o'), '--iters',
                        '1005', '--cost-file', costs, '--dry-run'])
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match='--device cuda'):
            study_gpu.main([root, '--cost-file', costs])
