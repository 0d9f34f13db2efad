"""Transfer end to end on tiny generated data (CPU): UPerNet on an ADE20K-like
folder through mmseg, Mask R-CNN on a COCO-like folder through mmdet.

Each test pretrains nothing itself: a module fixture runs 2 iterations of
MaskedMAE pretraining, converts the checkpoint with
tools/model_converters/mlmask2backbone.py's function, and each downstream
config (configs/transfer/, only shrunk to a 4-block 32-dim ViT on 64 px
images) trains 2 iterations from it with mmengine's Runner in the library's
default scope (what mmseg's / mmdet's tools/train.py do), then the
library's own tools/test.py (shipped in its wheel under .mim/tools) tests
the trained checkpoint in a new process and reports its metric (mIoU / COCO
bbox+segm mAP).
"""
import importlib
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from conftest import REPO
from transfer_helpers import (PATCH, SIZE, TINY_ARCH, converted_backbone,
                              make_ade_like, make_coco_like)


SEG_CONFIG = osp.join(
    REPO, 'configs', 'transfer',
    'upernet_vit-base-p16_8xb2-amp-160k_ade20k-512x512.py')
DET_CONFIG = osp.join(
    REPO, 'configs', 'transfer',
    'mask-rcnn_vit-base-p16_simple-fpn_8xb2-1x_coco.py')


@pytest.fixture(scope='module')
def backbone_ckpt(tmp_path_factory):
    return converted_backbone(str(tmp_path_factory.mktemp('transfer')))


def tiny_backbone(cfg, checkpoint, out_indices):
    cfg.model.backbone.update(
        arch=dict(TINY_ARCH), img_size=SIZE, patch_size=PATCH,
        out_indices=out_indices, drop_path_rate=0.0)
    cfg.model.backbone.init_cfg.checkpoint = checkpoint


def loaders(cfg, data_root, batch_size=2):
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg[name]
        loader.num_workers = 0
        loader.persistent_workers = False
        loader.dataset.data_root = data_root
    cfg.train_dataloader.batch_size = batch_size


def library_test_tool(library: str) -> str:
    """mmseg's / mmdet's own tools/test.py, as shipped in the wheel."""
    module = importlib.import_module(library)
    path = osp.join(osp.dirname(module.__file__), '.mim', 'tools', 'test.py')
    assert osp.isfile(path), path
    return path


def run(cfg, work_dir, metric, library):
    """Train (cfg.train_cfg; it validates at its end), then test the last
    checkpoint with the library's own ``tools/test.py`` in a new process:
    (runner, losses, test metrics), after checking that the test reproduces
    the validation's ``metric``."""
    cfg.work_dir = work_dir
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.randomness = dict(seed=0)
    train_cfg = cfg.copy()
    runner = Runner.from_cfg(train_cfg)
    runner.train()
    losses = runner.message_hub.get_scalar('train/loss').data[0]
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        checkpoint = f.read().strip()
    config_file = osp.join(work_dir, 'test_config.py')
    cfg.copy().dump(config_file)
    proc = subprocess.run(
        [sys.executable, library_test_tool(library), config_file, checkpoint,
         '--work-dir', osp.join(work_dir, 'test')],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    metrics = {
        name: float(value) for line in output.splitlines()
        if '(test)' in line
        for name, value in re.findall(r'(\S+): (-?[0-9.]+)', line)}
    assert metric in metrics, output[-3000:]
    # the same data as the validation at the end of training: the tool
    # loaded the trained weights (its log rounds to 2-4 decimals)
    assert metrics[metric] == pytest.approx(
        runner.message_hub.get_scalar(f'val/{metric}').current(), abs=1e-2)
    return runner, losses, metrics


def param_groups(runner):
    """{parameter name: its optimizer group} (mmengine appends one more
    group without a name, only to log the base lr)"""
    return {g['param_name']: g for g in runner.optim_wrapper.param_groups
            if 'param_name' in g}


# ------------------------------------------------------------------ mmseg
def seg_tiny_config(data, checkpoint):
    """The ADE20K config, shrunk: 4-block ViT, 64 px, 2 iterations."""
    cfg = Config.fromfile(SEG_CONFIG)
    # what the config keeps from mmseg's MAE recipe
    assert cfg.model.decode_head.type == 'UPerHead'
    assert cfg.train_cfg.max_iters == 160000
    assert cfg.optim_wrapper.paramwise_cfg.layer_decay_rate == 0.65
    assert cfg.crop_size == (512, 512)

    tiny_backbone(cfg, checkpoint, out_indices=(0, 1, 2, 3))
    dims = TINY_ARCH['embed_dims']
    cfg.model.neck.embed_dim = dims
    cfg.model.decode_head.update(in_channels=[dims] * 4, channels=16)
    cfg.model.auxiliary_head.update(in_channels=dims, channels=16)
    cfg.model.data_preprocessor.size = (SIZE, SIZE)
    cfg.model.test_cfg = dict(mode='slide', crop_size=(SIZE, SIZE),
                              stride=(SIZE // 2, SIZE // 2))
    for t in cfg.train_dataloader.dataset.pipeline:
        if t.type == 'RandomResize':
            t.scale = (2 * SIZE, SIZE)
        if t.type == 'RandomCrop':
            t.crop_size = (SIZE, SIZE)
    for t in cfg.test_dataloader.dataset.pipeline:
        if t.type == 'Resize':
            t.scale = (2 * SIZE, SIZE)
    cfg.val_dataloader = cfg.test_dataloader
    loaders(cfg, data)
    cfg.train_cfg.update(max_iters=2, val_interval=2)
    cfg.param_scheduler = [dict(type='LinearLR', start_factor=0.1,
                                by_epoch=False, begin=0, end=2)]
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=2,
                                        by_epoch=False)
    return cfg


@pytest.mark.slow
@pytest.mark.needs_mmseg
def test_upernet_ade20k_from_converted_checkpoint(backbone_ckpt, tmp_path):
    cfg = seg_tiny_config(make_ade_like(str(tmp_path / 'ade')),
                          backbone_ckpt)
    runner, losses, metrics = run(cfg, str(tmp_path / 'seg'), 'mIoU', 'mmseg')

    # the backbone started from the converted checkpoint (2 iterations of
    # lr <= 1e-4 AdamW move it by at most ~2e-4)
    pretrained = torch.load(backbone_ckpt, weights_only=True)['state_dict']
    trained = runner.model.backbone.state_dict()
    torch.testing.assert_close(trained['layers.0.ffn.layers.1.weight'],
                               pretrained['layers.0.ffn.layers.1.weight'],
                               rtol=0, atol=1e-3)
    assert not torch.equal(trained['layers.0.ffn.layers.1.weight'],
                           pretrained['layers.0.ffn.layers.1.weight'])
    # layer-wise lr decay: patch embedding ρ^(n+1), decode head ρ^0
    groups = param_groups(runner)
    n = TINY_ARCH['num_layers']
    assert groups['backbone.patch_embed.projection.weight']['lr_scale'] == \
        pytest.approx(0.65**(n + 1))
    assert groups['backbone.layers.1.attn.qkv.weight']['lr_scale'] == \
        pytest.approx(0.65**(n - 1))
    assert groups['decode_head.conv_seg.weight']['lr_scale'] == 1.0
    assert groups['backbone.layers.0.ln1.weight']['weight_decay'] == 0.0
    assert torch.isfinite(torch.as_tensor(losses)).all()
    assert 0.0 <= metrics['mIoU'] <= 100.0


# ------------------------------------------------------------------ mmdet
def shrink_mask_rcnn(model, channels):
    """32 channels in the pyramid and heads, fewer proposals and RoIs."""
    model.neck.update(in_channels=TINY_ARCH['embed_dims'],
                      out_channels=channels)
    model.rpn_head.update(in_channels=channels, feat_channels=channels)
    roi = model.roi_head
    roi.bbox_roi_extractor.out_channels = channels
    roi.mask_roi_extractor.out_channels = channels
    roi.bbox_head.update(in_channels=channels, fc_out_channels=2 * channels)
    roi.mask_head.update(in_channels=channels, conv_out_channels=channels)
    model.train_cfg.rpn_proposal.update(nms_pre=200, max_per_img=100)
    model.train_cfg.rcnn.sampler.num = 64
    model.test_cfg.rpn.update(nms_pre=200, max_per_img=100)
    # keep every detection (up to 20) so that the metric sees predictions
    model.test_cfg.rcnn.update(score_thr=0.0, max_per_img=20)


def det_tiny_config(data, checkpoint):
    """The COCO config, shrunk: 4-block ViT, 64 px, 1 epoch of 2 iters."""
    cfg = Config.fromfile(DET_CONFIG)
    assert cfg.model.type == 'MaskRCNN'
    assert cfg.model.neck.type == 'SimpleFeaturePyramid'
    assert cfg.train_cfg.max_epochs == 12

    tiny_backbone(cfg, checkpoint, out_indices=(3, ))
    shrink_mask_rcnn(cfg.model, channels=32)
    classes = ('a', 'b')
    cfg.model.roi_head.bbox_head.num_classes = len(classes)
    cfg.model.roi_head.mask_head.num_classes = len(classes)
    for loader in (cfg.train_dataloader, cfg.val_dataloader,
                   cfg.test_dataloader):
        loader.dataset.metainfo = dict(classes=classes)
        for t in loader.dataset.pipeline:
            if t.type == 'Resize':
                t.scale = (SIZE, SIZE)
    loaders(cfg, data)
    for name in ('val_evaluator', 'test_evaluator'):
        cfg[name].ann_file = osp.join(data, 'annotations',
                                      'instances_val2017.json')
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1)
    cfg.param_scheduler = [dict(type='LinearLR', start_factor=0.1,
                                by_epoch=False, begin=0, end=2)]
    return cfg


@pytest.mark.slow
@pytest.mark.needs_mmdet
def test_mask_rcnn_coco_from_converted_checkpoint(backbone_ckpt, tmp_path):
    cfg = det_tiny_config(make_coco_like(str(tmp_path / 'coco')),
                          backbone_ckpt)
    runner, losses, metrics = run(cfg, str(tmp_path / 'det'),
                                  'coco/bbox_mAP_50', 'mmdet')

    assert runner.iter == 2  # 4 images, batch 2
    pretrained = torch.load(backbone_ckpt, weights_only=True)['state_dict']
    trained = runner.model.backbone.state_dict()
    torch.testing.assert_close(trained['layers.2.attn.qkv.weight'],
                               pretrained['layers.2.attn.qkv.weight'],
                               rtol=0, atol=1e-3)
    groups = param_groups(runner)
    assert groups['backbone.cls_token']['lr_scale'] == pytest.approx(
        0.7**(TINY_ARCH['num_layers'] + 1))
    assert groups['neck.levels.0.1.weight']['lr_scale'] == 1.0
    assert torch.isfinite(torch.as_tensor(losses)).all()
    for key in ('coco/bbox_mAP', 'coco/segm_mAP', 'coco/bbox_mAP_50'):
        assert 0.0 <= metrics[key] <= 1.0, (key, metrics)


# --------------------------------------------------- simple feature pyramid
def test_simple_feature_pyramid_levels_and_errors():
    from mlmask_mm.models.necks import SimpleFeaturePyramid
    neck = SimpleFeaturePyramid(in_channels=32, out_channels=8, num_outs=5)
    neck.init_weights()
    x = torch.randn(2, 32, 6, 4)  # stride-16 map of a 96 x 64 image
    outs = neck((torch.randn(2, 32, 6, 4), x))  # only the last map is used
    # strides 4, 8, 16, 32 and the max-pooled stride 64
    assert [tuple(o.shape) for o in outs] == [
        (2, 8, 24, 16), (2, 8, 12, 8), (2, 8, 6, 4), (2, 8, 3, 2),
        (2, 8, 2, 1)]
    torch.testing.assert_close(outs[4], outs[3][:, :, ::2, ::2])
    # every level ends with a channel LayerNorm (weight 1, bias 0 at init)
    for o in outs[:4]:
        torch.testing.assert_close(o.mean(1), torch.zeros_like(o[:, 0]),
                                   atol=1e-5, rtol=0)
    # the stride-4 level: two 2x2 deconvolutions, C -> C/2 -> C/4
    deconvs = [m for m in neck.levels[0].modules()
               if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(m.in_channels, m.out_channels) for m in deconvs] == [(32, 16),
                                                                  (16, 8)]
    with pytest.raises(ValueError, match='scale_factors'):
        SimpleFeaturePyramid(in_channels=32, scale_factors=(1.0, 2.0))
    with pytest.raises(ValueError, match='in_channels=30'):
        SimpleFeaturePyramid(in_channels=30)
    with pytest.raises(ValueError, match='num_outs=3'):
        SimpleFeaturePyramid(in_channels=32, num_outs=3)
    with pytest.raises(ValueError, match=r"out_type='featmap'"):
        neck((torch.randn(2, 5, 32), ))


@pytest.mark.needs_mmseg
@pytest.mark.needs_mmdet
def test_components_resolve_from_mmdet_and_mmseg_scopes():
    """mmengine finds 'mlmask_mm.X' only from mmpretrain's registries; the
    transfer modules register the components in mmdet's and mmseg's."""
    from mmdet.registry import MODELS as DET_MODELS
    from mmdet.registry import OPTIM_WRAPPER_CONSTRUCTORS as DET_OWC
    from mmseg.registry import MODELS as SEG_MODELS
    from mmseg.registry import OPTIM_WRAPPER_CONSTRUCTORS as SEG_OWC

    import mlmask_mm.transfer.mmdet_components  # noqa: F401
    import mlmask_mm.transfer.mmseg_components  # noqa: F401
    from mlmask_mm.engine.optimizers import \
        BackboneLayerDecayOptimWrapperConstructor as Constructor
    from mlmask_mm.models.necks import SimpleFeaturePyramid
    for models, constructors in ((DET_MODELS, DET_OWC),
                                 (SEG_MODELS, SEG_OWC)):
        assert models.get('SimpleFeaturePyramid') is SimpleFeaturePyramid
        assert constructors.get(
            'BackboneLayerDecayOptimWrapperConstructor') is Constructor
        from mmpretrain.models import VisionTransformer
        assert models.get('mmpretrain.VisionTransformer') is VisionTransformer
    with pytest.raises(TypeError, match='get_layer_depth'):
        Constructor(dict(type='OptimWrapper',
                         optimizer=dict(type='AdamW', lr=1e-4)),
                    dict(layer_decay_rate=0.5))(torch.nn.Linear(2, 2))


@pytest.mark.needs_mmseg
@pytest.mark.needs_mmdet
def test_transfer_stack_is_installed():
    """`make test` installs the seg/det extras after the full mmcv build."""
    import importlib.metadata as metadata

    import pycocotools.mask  # noqa: F401
    assert metadata.version('mmsegmentation') == '1.2.2'
    assert metadata.version('mmdet') == '3.3.0'
    assert metadata.version('mmcv') == '2.1.0'
    # both libraries register everything next to mlmask_mm and mmpretrain
    # (with transformers also installed, mmpretrain's BLIP import fails:
    # the extras leave it out)
    from mmdet.utils import register_all_modules as register_mmdet
    from mmseg.utils import register_all_modules as register_mmseg
    register_mmdet(init_default_scope=False)
    register_mmseg(init_default_scope=False)
