# ADE20K at MLO-MAE's setting (MLO-MAE paper, B.6): mmseg's MAE protocol
# (mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py) started from the model
# *after ImageNet fine-tuning*, batch 8 (4 GPUs x 2 images: 2 per process
# keeps the heads' SyncBN / BN, whose pooled branch sees 1x1 maps, defined
# on one GPU as well), lr 1e-4, 160k iterations; everything else as that
# config.
#
#   # the fine-tuned classifier: configs/benchmarks/vit-base-p16_8xb128-coslr-100e_in1k.py
#   python tools/model_converters/mlmask2backbone.py \
#       work_dirs/FINETUNE/epoch_100.pth work_dirs/FINETUNE/backbone_mmseg-mae.pth --target mmseg-mae
#   bash $MMSEG/.mim/tools/dist_train.sh THIS_CONFIG 4 --cfg-options \
#       model.pretrained=work_dirs/FINETUNE/backbone_mmseg-mae.pth
_base_ = ['./mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py']

model = dict(pretrained='work_dirs/finetune/backbone_mmseg-mae.pth')

train_dataloader = dict(batch_size=2)
