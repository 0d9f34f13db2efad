# ADE20K semantic segmentation at mmseg's MAE protocol (the numbers of the
# mmseg MAE table and of MLO-MAE's / Self-Guided's papers come from it).
#
# mmseg's own config, unchanged: its `MAE` backbone (BEiT blocks: relative
# position bias in every block, initialised to 0; layer scale init 1.0; no
# norm on the last output), UPerNet + Feature2Pyramid, 512x512 crops, 160k
# iterations, AdamW lr 1e-4 wd 0.05, mmseg's LayerDecayOptimizerConstructor
# (0.65), 8 GPUs x 2 images.  Changed: the checkpoint; mixed precision on
# (the base's `fp16 = dict(...)` is an mmseg 0.x key that mmseg 1.x
# ignores); StrictPretrainedHook.  configs/transfer/README.md: every
# difference.
#
#   python tools/model_converters/mlmask2backbone.py \
#       work_dirs/PRETRAIN/iter_N.pth work_dirs/PRETRAIN/backbone_mmseg-mae.pth --target mmseg-mae
#   bash $MMSEG/.mim/tools/dist_train.sh THIS_CONFIG 8 --cfg-options \
#       model.pretrained=work_dirs/PRETRAIN/backbone_mmseg-mae.pth
_base_ = ['mmseg::mae/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py']

custom_imports = dict(
    imports=['mlmask_mm.transfer.mmseg_components'],
    allow_failed_imports=False)

# output of mlmask2backbone.py --target mmseg-mae (override on the command
# line: --cfg-options model.pretrained=PATH)
model = dict(pretrained='work_dirs/pretrain/backbone_mmseg-mae.pth')

# "amp" in the name: mixed precision without --amp (dynamic loss scale, as
# the base's fp16 dict asked)
optim_wrapper = dict(type='AmpOptimWrapper', loss_scale='dynamic')

# the checkpoint must cover the backbone; only these start from their init
custom_hooks = [
    dict(type='StrictPretrainedHook',
         new_params=[r'layers\.\d+\.gamma_[12]',
                     r'layers\.\d+\.attn\.relative_position_bias_table'])
]
