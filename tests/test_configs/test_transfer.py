"""Transfer at the protocols behind the published numbers, end to end on
tiny generated data (CPU).

A module fixture pretrains a 4-block 32-dim ViT for 2 iterations
(MaskedMAE) and converts it (tools/model_converters/mlmask2backbone.py's
function) for each target.  Each transfer config of configs/transfer/,
shrunk only in size (4 blocks, 64 px images, 2 iterations, fp32 on CPU),
then trains with the library's own ``tools/train.py`` (shipped in the
mmseg / mmdet wheels) in a new process, and the log and the trained
checkpoint show which parameters loaded and which started from their init.
The fine-tuned-classifier path (MLO-MAE's ADE20K setting) starts from the
classifier of configs/benchmarks/vit-base-p16_8xb128-coslr-100e_in1k.py.
A wrong checkpoint stops before the first iteration (StrictPretrainedHook).
"""
import copy
import glob
import importlib
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

from conftest import REPO
from transfer_helpers import (PATCH, SIZE, TINY_ARCH, make_ade_like,
                              make_coco_like, pretrain_tiny_mae,
                              replace_sizes)

from mlmask_mm.utils.backbone_converter import convert_checkpoint

# processes, Runners or mmseg/mmdet training: minutes in all (make test-quick
# leaves them out)
pytestmark = pytest.mark.slow

TRANSFER = osp.join(REPO, 'configs', 'transfer')
SEG = osp.join(TRANSFER, 'mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py')
SEG_FT = osp.join(TRANSFER,
                  'mae-base-in1k-ft_upernet_4xb2-amp-160k_ade20k-512x512.py')
DET = osp.join(TRANSFER, 'vitdet_mask-rcnn_vit-b_16xb4-amp-lsj-100e_coco.py')
DET_90K = osp.join(TRANSFER,
                   'vitdet_mask-rcnn_vit-b_16xb4-amp-lsj-90k_coco.py')
FINETUNE = osp.join(REPO, 'configs', 'benchmarks',
                    'vit-base-p16_8xb128-coslr-100e_in1k.py')
N = TINY_ARCH['num_layers']
#: what each target starts from its init, per block
MMSEG_MAE_NEW = ('gamma_1', 'gamma_2', 'attn.relative_position_bias_table')
VITDET_NEW = ('attn.rel_pos_h', 'attn.rel_pos_w')


@pytest.fixture(scope='module')
def pretrained(tmp_path_factory):
    """{'pretrain': the pretraining checkpoint, target: converted file}."""
    root = str(tmp_path_factory.mktemp('transfer'))
    src = pretrain_tiny_mae(root)
    out = dict(pretrain=src)
    for target in ('mmseg-mae', 'vitdet'):
        out[target] = osp.join(root, f'backbone_{target}.pth')
        convert_checkpoint(src, out[target], target=target)
    return out


def library_tool(library: str, name: str) -> str:
    """mmseg's / mmdet's own tools/NAME, as shipped in the wheel."""
    module = importlib.import_module(library)
    path = osp.join(osp.dirname(module.__file__), '.mim', 'tools', name)
    assert osp.isfile(path), path
    return path


def train_with_tool(cfg, work_dir, library, expect_ok=True):
    """Dump ``cfg`` (fp32 on CPU, 2 iterations) and train it with the
    library's tools/train.py in a new process: its output."""
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    cfg.optim_wrapper.type = 'OptimWrapper'  # (AMP needs a GPU)
    cfg.optim_wrapper.pop('loss_scale', None)
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[name].update(num_workers=0, persistent_workers=False)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2)
    cfg.param_scheduler = [dict(type='LinearLR', start_factor=0.5,
                                by_epoch=False, begin=0, end=2)]
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=2,
                                        by_epoch=False)
    cfg.default_hooks.pop('visualization', None)
    cfg.randomness = dict(seed=0)
    os.makedirs(work_dir, exist_ok=True)
    config_file = osp.join(work_dir, 'config.py')
    cfg.dump(config_file)
    proc = subprocess.run(
        [sys.executable, library_tool(library, 'train.py'), config_file,
         '--work-dir', work_dir],
        cwd=REPO, capture_output=True, text=True, timeout=900)
    output = proc.stdout + proc.stderr
    if expect_ok:
        assert proc.returncode == 0, output[-4000:]
        assert osp.isfile(osp.join(work_dir, 'iter_2.pth')), output[-3000:]
    return proc.returncode, output


def started_from_init(output):
    """The parameter names StrictPretrainedHook logged as at init."""
    m = re.search(r'StrictPretrainedHook: .* covers model\.backbone; (\d+) '
                  r'parameters start from their init: (.*)', output)
    assert m, output[-3000:]
    names = [] if m.group(2).strip() == 'none' else \
        m.group(2).strip().split(', ')
    assert len(names) == int(m.group(1))
    return set(names)


def trained_backbone(work_dir):
    sd = torch.load(osp.join(work_dir, 'iter_2.pth'), map_location='cpu',
                    weights_only=False)['state_dict']
    return {k[len('backbone.'):]: v for k, v in sd.items()
            if k.startswith('backbone.')}


def assert_started_from(trained, converted, new_names, at_init):
    """Every converted tensor is where training started (2 AdamW steps of
    lr <= 1e-4 move it by <= 2e-4, the pos embedding is resized); the new
    parameters started from their init value."""
    for k, v in converted.items():
        if k != 'pos_embed':
            torch.testing.assert_close(trained[k], v, rtol=0, atol=1e-3)
    for name in new_names:
        torch.testing.assert_close(
            trained[name], torch.full_like(trained[name], at_init(name)),
            rtol=0, atol=1e-3)


# ------------------------------------------------------------ ADE20K
def seg_tiny(config, checkpoint, data):
    """An ADE20K config shrunk in size only: mmseg MAE with 4 blocks of 32
    dims at 64 px (pretrained at 32 px: position table interpolated)."""
    cfg = Config.fromfile(config)
    # what the config keeps from mmseg's MAE protocol
    assert cfg.model.backbone.type == 'MAE'
    assert cfg.model.backbone.init_values == 1.0
    assert cfg.model.backbone.get('final_norm', False) is False  # MAE's default
    assert cfg.model.decode_head.type == 'UPerHead'
    assert cfg.optim_wrapper.constructor == 'LayerDecayOptimizerConstructor'
    assert cfg.optim_wrapper.paramwise_cfg.layer_decay_rate == 0.65
    assert cfg.optim_wrapper.optimizer.lr == 1e-4
    assert cfg.train_cfg.max_iters == 160000
    cfg.model.backbone.update(
        embed_dims=TINY_ARCH['embed_dims'], num_layers=N,
        num_heads=TINY_ARCH['num_heads'],
        mlp_ratio=TINY_ARCH['feedforward_channels'] //
        TINY_ARCH['embed_dims'], out_indices=[0, 1, 2, 3],
        drop_path_rate=0.0)
    cfg.model.pretrained = checkpoint
    dims = TINY_ARCH['embed_dims']
    cfg.model.neck.embed_dim = dims
    cfg.model.decode_head.update(in_channels=[dims] * 4, channels=16)
    cfg.model.auxiliary_head.update(in_channels=dims, channels=16)
    cfg.optim_wrapper.paramwise_cfg.num_layers = N
    replace_sizes(cfg._cfg_dict, {(512, 512): (SIZE, SIZE),
                                  (2048, 512): (2 * SIZE, SIZE),
                                  (341, 341): (SIZE // 2, SIZE // 2)})
    assert cfg.model.backbone.img_size == (SIZE, SIZE)
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[name].dataset.data_root = data
    return cfg


def _mmseg_mae_new():
    return {f'layers.{i}.{p}' for i in range(N) for p in MMSEG_MAE_NEW}


@pytest.mark.slow
@pytest.mark.needs_mmseg
def test_upernet_mae_protocol_trains_from_converted_checkpoint(
        pretrained, tmp_path):
    cfg = seg_tiny(SEG, pretrained['mmseg-mae'],
                   make_ade_like(str(tmp_path / 'ade')))
    assert cfg.train_dataloader.batch_size == 2  # 8 GPUs x 2
    work = str(tmp_path / 'seg')
    _, output = train_with_tool(cfg, work, 'mmseg')
    # only the layer scale and relative position tables start from init
    assert started_from_init(output) == _mmseg_mae_new()
    converted = torch.load(pretrained['mmseg-mae'],
                           weights_only=True)['state_dict']
    assert_started_from(
        trained_backbone(work), converted, _mmseg_mae_new(),
        lambda name: 1.0 if 'gamma' in name else 0.0)
    assert 'Iter(train) [2/2]' in output


@pytest.mark.slow
@pytest.mark.needs_mmseg
def test_mlo_mae_setting_from_a_fine_tuned_classifier(pretrained, tmp_path):
    """Pretraining → the fine-tune config's classifier → mmseg-mae layout
    (its pooled-feature norm and head dropped) → the batch-8 ADE20K config
    (4 GPUs x 2)."""
    from mlmask_mm.registry import MODELS
    ft = Config.fromfile(FINETUNE)
    assert ft.model.backbone.out_type == 'avg_featmap'
    ft.model.backbone.update(arch=dict(TINY_ARCH), img_size=32,
                             patch_size=PATCH)
    ft.model.backbone.init_cfg.checkpoint = pretrained['pretrain']
    ft.model.head.update(in_channels=TINY_ARCH['embed_dims'],
                         num_classes=5)
    ft.model.pop('train_cfg', None)  # (Mixup/CutMix: not needed to save)
    from mmengine.registry import init_default_scope
    init_default_scope('mlmask_mm')
    classifier = MODELS.build(ft.model)
    classifier.init_weights()
    with torch.no_grad():  # "fine-tuned": every weight moved
        for p in classifier.parameters():
            p.add_(0.01)
    src = str(tmp_path / 'classifier.pth')
    torch.save({'state_dict': classifier.state_dict(),
                'meta': dict(epoch=100)}, src)
    dst = str(tmp_path / 'backbone_ft.pth')
    meta = convert_checkpoint(src, dst, target='mmseg-mae')
    assert meta['dropped_prefixes'] == ['data_preprocessor', 'head'] or \
        'head' in meta['dropped_prefixes']
    assert meta['dropped_backbone_keys'] == ['ln2.bias', 'ln2.weight']

    cfg = seg_tiny(SEG_FT, dst, make_ade_like(str(tmp_path / 'ade')))
    assert cfg.train_dataloader.batch_size == 2  # x 4 GPUs: MLO-MAE's 8
    work = str(tmp_path / 'seg_ft')
    _, output = train_with_tool(cfg, work, 'mmseg')
    assert started_from_init(output) == _mmseg_mae_new()
    trained = trained_backbone(work)
    fine_tuned = classifier.state_dict()
    torch.testing.assert_close(trained['layers.1.attn.qkv.weight'],
                               fine_tuned['backbone.layers.1.attn.qkv.weight'],
                               rtol=0, atol=1e-3)


# --------------------------------------------------------------- COCO
def det_tiny(config, checkpoint, data):
    """A ViTDet config shrunk in size only: 4 blocks (global 1 and 3,
    windows of 2 patches elsewhere), 64 px LSJ crops."""
    cfg = Config.fromfile(config)
    bb = cfg.model.backbone
    assert (bb.type, bb.window_size, bb.pretrain_img_size) == ('ViTDet', 14,
                                                               224)
    assert cfg.model.rpn_head.num_convs == 2
    assert cfg.model.roi_head.bbox_head.type == 'Shared4Conv1FCBBoxHead'
    assert cfg.model.roi_head.mask_head.norm_cfg.type == 'LN2d'
    assert cfg.optim_wrapper.paramwise_cfg.layer_decay_rate == 0.7
    assert cfg.optim_wrapper.optimizer.lr == 1e-4
    assert cfg.train_dataloader.batch_size == 4  # x 16 GPUs = 64
    bb.update(arch=dict(TINY_ARCH, global_attn_indexes=[1, 3]),
              img_size=SIZE, pretrain_img_size=32, window_size=2,
              out_indices=(N - 1, ), drop_path_rate=0.1)
    bb.init_cfg.checkpoint = checkpoint
    ch = 32
    cfg.model.neck.update(in_channels=TINY_ARCH['embed_dims'],
                          out_channels=ch)
    cfg.model.rpn_head.update(in_channels=ch, feat_channels=ch)
    roi = cfg.model.roi_head
    roi.bbox_roi_extractor.out_channels = ch
    roi.mask_roi_extractor.out_channels = ch
    roi.bbox_head.update(in_channels=ch, conv_out_channels=ch,
                         fc_out_channels=2 * ch, num_classes=2)
    roi.mask_head.update(in_channels=ch, conv_out_channels=ch,
                         num_classes=2)
    cfg.model.train_cfg.rpn_proposal.update(nms_pre=200, max_per_img=100)
    cfg.model.train_cfg.rcnn.sampler.num = 64
    replace_sizes(cfg._cfg_dict, {(1024, 1024): (SIZE, SIZE)})
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[name].dataset.update(data_root=data,
                                 metainfo=dict(classes=('a', 'b')))
    cfg.train_dataloader.batch_size = 2
    cfg.train_dataloader.dataset.filter_cfg = dict(filter_empty_gt=False)
    return cfg


@pytest.mark.slow
@pytest.mark.needs_mmdet
@pytest.mark.parametrize('config', [DET, DET_90K])
def test_vitdet_protocol_trains_from_converted_checkpoint(
        pretrained, tmp_path, config):
    cfg = det_tiny(config, pretrained['vitdet'],
                   make_coco_like(str(tmp_path / 'coco')))
    work = str(tmp_path / 'det')
    _, output = train_with_tool(cfg, work, 'mmdet')
    new = {f'layers.{i}.{p}' for i in range(N) for p in VITDET_NEW}
    assert started_from_init(output) == new
    converted = torch.load(pretrained['vitdet'],
                           weights_only=True)['state_dict']
    trained = trained_backbone(work)
    assert trained['pos_embed'].shape == (1, 2, 2, 32)  # pretraining grid
    assert_started_from(trained, converted, new, lambda name: 0.0)
    assert 'Iter(train) [2/2]' in output


@pytest.mark.needs_mmdet
def test_vitdet_schedules_and_lr_decay():
    """The 100-epoch protocol and Self-Guided's 90k cut; the layer-wise
    lr scales of detectron2's get_vit_lr_decay_rate (0.7^(13 - id))."""
    from mmengine.registry import init_default_scope
    from mmdet.registry import MODELS, OPTIM_WRAPPERS  # noqa: F401

    import mlmask_mm.transfer.mmdet_components  # noqa: F401
    from mlmask_mm.engine.optimizers import \
        BackboneLayerDecayOptimWrapperConstructor as Constructor
    full, cut = Config.fromfile(DET), Config.fromfile(DET_90K)
    assert full.train_cfg.max_iters == 184375
    assert full.param_scheduler[1].milestones == [163889, 177546]
    assert cut.train_cfg.max_iters == 90000
    for a, b in zip(full.param_scheduler[1].milestones,
                    cut.param_scheduler[1].milestones):
        assert a / 184375 == pytest.approx(b / 90000, abs=1e-4)
    init_default_scope('mmdet')
    cfg = det_tiny(DET, 'unused.pth', 'unused')
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    wrapper_cfg = cfg.optim_wrapper.copy()
    wrapper_cfg.type = 'OptimWrapper'  # (AMP needs a GPU)
    wrapper_cfg.pop('constructor')
    wrapper = Constructor(wrapper_cfg,
                          wrapper_cfg.pop('paramwise_cfg'))(model)
    groups = {g['param_name']: g for g in wrapper.param_groups
              if 'param_name' in g}
    rate = 0.7
    for name, scale in [('backbone.pos_embed', rate**(N + 1)),
                        ('backbone.patch_embed.projection.weight',
                         rate**(N + 1)),
                        ('backbone.layers.0.attn.qkv.weight', rate**N),
                        (f'backbone.layers.{N - 1}.attn.rel_pos_h', rate),
                        ('neck.levels.0.1.weight', 1.0),
                        ('roi_head.bbox_head.fc_cls.weight', 1.0)]:
        assert groups[name]['lr_scale'] == pytest.approx(scale), name
    for name in ('backbone.pos_embed', 'backbone.layers.0.ln1.weight',
                 'backbone.layers.0.attn.qkv.bias'):
        assert groups[name]['weight_decay'] == 0.0, name
    assert groups['backbone.layers.0.attn.rel_pos_h']['weight_decay'] == 0.1


# ------------------------------------------------- mixed precision names
def test_a_config_named_amp_trains_in_mixed_precision():
    """No --amp needed: every config whose name says amp has an AMP optim
    wrapper (for each part, where a method has several)."""
    files = [f for f in glob.glob(osp.join(REPO, 'configs', '**', '*.py'),
                                  recursive=True) +
             glob.glob(osp.join(REPO, 'projects', '**', '*.py'),
                       recursive=True) if '-amp-' in osp.basename(f)]
    assert len(files) >= 5, files
    for f in files:
        if ('mmseg' in f or 'transfer' in f) and importlib.util.find_spec(
                'mmseg') is None:
            continue
        cfg = Config.fromfile(f)
        wrapper = cfg.optim_wrapper
        types = [wrapper.get('type', '')] + [
            v.get('type', '') for v in wrapper.values()
            if isinstance(v, dict) and 'optimizer' in v]
        assert any(t.split('.')[-1].endswith('AmpOptimWrapper')
                   for t in types), (f, types)


# ------------------------------------------------------- strict loading
@pytest.mark.slow
@pytest.mark.needs_mmseg
def test_wrong_checkpoint_stops_before_the_first_iteration(pretrained,
                                                           tmp_path):
    """The unconverted pretraining checkpoint through mmseg's train.py."""
    cfg = seg_tiny(SEG, pretrained['pretrain'],
                   make_ade_like(str(tmp_path / 'ade')))
    rc, output = train_with_tool(cfg, str(tmp_path / 'seg'), 'mmseg',
                                 expect_ok=False)
    assert rc != 0
    assert 'PretrainedMismatchError' in output
    assert pretrained['pretrain'] in output
    assert 'cls_token' in output and 'not in it' in output
    assert 'Iter(train)' not in output


def tiny_mmseg_mae(checkpoint=None, embed_dims=TINY_ARCH['embed_dims']):
    from mmseg.models.backbones import MAE
    return MAE(img_size=SIZE, patch_size=PATCH, embed_dims=embed_dims,
               num_layers=N, num_heads=TINY_ARCH['num_heads'], mlp_ratio=2,
               init_values=1.0, out_indices=[N - 1], pretrained=checkpoint)


@pytest.mark.needs_mmseg
def test_strict_check_refuses_wrong_checkpoints(pretrained, tmp_path):
    from mlmask_mm.engine.hooks.strict_pretrained_hook import (
        PretrainedMismatchError, check_pretrained)
    from mlmask_mm.utils.backbone_converter import convert_state_dict
    model = tiny_mmseg_mae()
    new = [r'layers\.\d+\.gamma_[12]',
           r'layers\.\d+\.attn\.relative_position_bias_table']

    # the right file: loads, only the listed new parameters at init
    at_init = check_pretrained(model, pretrained['mmseg-mae'], None, new)
    assert set(at_init) == _mmseg_mae_new()

    # 1. the unconverted whole pretraining checkpoint
    with pytest.raises(PretrainedMismatchError) as err:
        check_pretrained(model, pretrained['pretrain'], None, new)
    msg = str(err.value)
    assert pretrained['pretrain'] in msg and 'cls_token' in msg
    assert 'backbone.layers.0.attn.qkv.weight' in msg or 'not in model' in msg

    # 2. a ViT of the wrong width (48 dims), converted correctly
    from mmpretrain.models import VisionTransformer
    wide = VisionTransformer(arch=dict(TINY_ARCH, embed_dims=48),
                             img_size=32, patch_size=PATCH)
    wide_file = str(tmp_path / 'wide.pth')
    torch.save({'state_dict': convert_state_dict(
        {f'backbone.{k}': v for k, v in wide.state_dict().items()},
        'mmseg-mae')}, wide_file)
    with pytest.raises(PretrainedMismatchError,
                       match=r'wide\.pth.*shapes differ.*qkv\.bias \(144,\) vs \(96,\)'):
        check_pretrained(model, wide_file, None, new)

    # 3. a detector checkpoint (Mask R-CNN on this ViT: backbone. + heads)
    det = torch.load(pretrained['vitdet'], weights_only=True)['state_dict']
    det_file = str(tmp_path / 'mask_rcnn.pth')
    torch.save({'state_dict': dict(
        {f'backbone.{k}': v for k, v in det.items()},
        **{'rpn_head.rpn_conv.weight': torch.zeros(2, 2, 3, 3)})}, det_file)
    with pytest.raises(PretrainedMismatchError,
                       match=r'mask_rcnn\.pth.*are not in it.*are not in '
                       r'model\.backbone'):
        check_pretrained(model, det_file, None, new)

    # 4. the right layout with a prefix that matches nothing
    with pytest.raises(PretrainedMismatchError, match="prefix 'backbone.'"):
        check_pretrained(model, pretrained['mmseg-mae'], 'backbone.', new)
    # without the list of new parameters, the right file is refused too
    with pytest.raises(PretrainedMismatchError, match='gamma_1'):
        check_pretrained(model, pretrained['mmseg-mae'])


@pytest.mark.parametrize('config', [
    'vit-base-p16_8xb128-coslr-100e_in1k.py',
    'vit-tiny-p2_1xb256-coslr-100e_cifar10.py',
    'vit-base-p16_8xb2048-linear-coslr-90e_in1k.py',
    'vit-tiny-p2_1xb256-linear-coslr-90e_cifar10.py'])
def test_fine_tune_and_linear_configs_load_strictly(pretrained, tmp_path,
                                                    config):
    """The pretraining checkpoint (prefix backbone.) covers the classifier's
    backbone: only the pooled-feature norm of the fine-tune configs starts
    from its init; a backbone-only file (no prefix) is refused."""
    from mmengine.registry import init_default_scope
    from mlmask_mm.engine.hooks.strict_pretrained_hook import (
        PretrainedMismatchError, check_pretrained)
    from mlmask_mm.registry import MODELS
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'benchmarks', config))
    (hook, ) = [h for h in cfg.custom_hooks
                if h.type.endswith('StrictPretrainedHook')]
    bb = cfg.model.backbone
    bb.update(arch=dict(TINY_ARCH), img_size=32, patch_size=PATCH)
    if bb.get('frozen_stages'):
        bb.frozen_stages = N
    init_default_scope('mlmask_mm')
    backbone = MODELS.build(bb)
    args = (hook.get('new_params', ()), hook.get('ignored_keys', ()))
    at_init = check_pretrained(backbone, pretrained['pretrain'],
                               bb.init_cfg.prefix, *args)
    pooled = bb.out_type == 'avg_featmap'
    assert set(at_init) == ({'ln2.weight', 'ln2.bias'} if pooled else set())
    with pytest.raises(PretrainedMismatchError, match="prefix 'backbone.'"):
        check_pretrained(backbone, pretrained['vitdet'], bb.init_cfg.prefix,
                         *args)


@pytest.mark.slow
@pytest.mark.needs_mmseg
@pytest.mark.needs_mmdet
def test_full_size_backbones_are_covered_by_a_converted_vit_b(tmp_path):
    """No shrinking: the ViT-B of configs/mae's ImageNet pretraining config
    (random weights), converted, covers the backbone of each transfer
    config at its real size, with exactly the listed new parameters."""
    from mmengine.registry import init_default_scope
    from mmdet.registry import MODELS as DET_MODELS
    from mmseg.registry import MODELS as SEG_MODELS

    import mlmask_mm.transfer.mmdet_components  # noqa: F401
    from mlmask_mm.engine.hooks.strict_pretrained_hook import \
        check_pretrained
    from mlmask_mm.registry import MODELS
    init_default_scope('mlmask_mm')
    pre = Config.fromfile(osp.join(
        REPO, 'configs', 'mae', 'mae_vit-base-p16_8xb512-amp-coslr-400e_in1k.py'))
    src = str(tmp_path / 'pretrain.pth')
    torch.save({'state_dict': MODELS.build(pre.model).state_dict()}, src)
    for config, target, registry in ((SEG, 'mmseg-mae', SEG_MODELS),
                                     (SEG_FT, 'mmseg-mae', SEG_MODELS),
                                     (DET, 'vitdet', DET_MODELS)):
        init_default_scope(registry.scope)  # ('MAE' is also mmpretrain's)
        cfg = Config.fromfile(config)
        dst = str(tmp_path / f'{target}.pth')
        convert_checkpoint(src, dst, target=target)
        bb = cfg.model.backbone.copy()
        bb.pop('init_cfg', None)
        backbone = registry.build(bb)
        (hook, ) = cfg.custom_hooks
        at_init = check_pretrained(backbone, dst, None, hook.new_params)
        new = MMSEG_MAE_NEW if target == 'mmseg-mae' else VITDET_NEW
        assert set(at_init) == {f'layers.{i}.{p}' for i in range(12)
                                for p in new}, config
