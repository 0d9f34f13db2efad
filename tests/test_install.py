"""The stack `make test` installs: full mmcv with compiled ops."""
import importlib.metadata

import pytest
import torch


@pytest.mark.needs_mmcv_ops
def test_full_mmcv_ops_match_torchvision():
    """tools/install_mmcv.sh built mmcv 2.1.0 with working (CPU) ops."""
    import torchvision
    from mmcv.ops import nms, roi_align

    assert importlib.metadata.version('mmcv') == '2.1.0'
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(50, 2, generator=g) * 50
    boxes = torch.cat([xy, xy + 5 + torch.rand(50, 2, generator=g) * 20], 1)
    scores = torch.rand(50, generator=g)
    _, keep = nms(boxes, scores, iou_threshold=0.5)
    assert torch.equal(keep.sort().values,
                       torchvision.ops.nms(boxes, scores, 0.5).sort().values)
    feats = torch.randn(1, 3, 16, 16, generator=g)
    rois = torch.tensor([[0, 1.0, 2.0, 9.0, 12.0], [0, 0.5, 0.5, 15, 15]])
    ours = roi_align(feats, rois, (4, 4), 1.0, 2, 'avg', True)
    ref = torchvision.ops.roi_align(feats, rois, (4, 4), 1.0, 2, True)
    torch.testing.assert_close(ours, ref)
