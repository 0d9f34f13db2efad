"""Self-Guided analysis metrics on hand-made tensors, and the tool."""
import json
import os.path as osp
import subprocess
import sys

import pytest
import torch

from mlmask_mm.evaluation import (attention_distance, bipartition_gap,
                                  feature_variance, similarity_variance)


def test_feature_and_similarity_variance_by_hand():
    x = torch.tensor([[[1., 0.], [0., 1.], [1., 0.]]], dtype=torch.float64)
    # normalised already; per channel variance over 3 tokens: (2/9, 2/9),
    # summed over the channels (paper eq. 3): 4/9
    assert torch.isclose(feature_variance(x),
                         torch.tensor(4 / 9, dtype=torch.float64))
    # off-diagonal cosines: (0,1)=0 (0,2)=1 (1,2)=0, each twice → var of
    # [0, 1, 0, 0, 1, 0] = 1/3 - 1/9 = 2/9
    assert torch.isclose(similarity_variance(x),
                         torch.tensor(2 / 9, dtype=torch.float64))


def test_attention_distance_by_hand():
    # 1 x 2 grid: each token attends 3/4 to the other one (distance 1)
    attn = torch.tensor([[[0.25, 0.75], [0.75, 0.25]]])
    assert torch.isclose(attention_distance(attn, (1, 2)), torch.tensor(.75))


def test_bipartition_gap_by_hand():
    x = torch.tensor([[[1., 0.], [1., 0.], [0., 1.], [0., 1.]]])
    part = torch.tensor([[True, True, False, False]])
    # intra pairs all cos 1, inter pairs all cos 0
    assert torch.isclose(bipartition_gap(x, part), torch.tensor(1.))


@pytest.mark.slow
def test_analysis_tool_writes_json_and_pictures(tmp_path):
    from conftest import REPO, tiny_config
    from conftest import make_image_folder
    # images of different sizes, as in ImageNet
    root = make_image_folder(str(tmp_path / 'mixed'), classes=('a', ),
                             per_class=2, size=16)
    make_image_folder(root, classes=('b', ), per_class=2, size=24)
    cfg = tiny_config(root, str(tmp_path / 'w'))
    cfg_path = str(tmp_path / 'tiny.py')
    cfg.dump(cfg_path)
    out = tmp_path / 'analysis'
    proc = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'analysis_tools', 'sg_analysis.py'),
         cfg_path, '--num-images', '3', '--out-dir', str(out)],
        capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((out / 'metrics.json').read_text())
    assert len(metrics['feature_variance']) == 2  # 2 encoder layers
    assert len(metrics['exploitation']) == 1      # 1 decoder layer
    assert {'R_VO', 'R_MO'} <= set(metrics['exploitation'][0])
    rates = metrics['exploitation'][0]
    assert abs(rates['R_VO'] + rates['R_MO'] - 1) < 1e-5  # the rollout
    assert metrics['features'] == 'values'
    assert metrics['solver']['cap_share'] == 0.0
    assert osp.getsize(out / 'masks.png') > 0
    assert osp.getsize(out / 'metrics.png') > 0
