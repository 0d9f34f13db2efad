# ImageNet-1k for MLO-MAE: mmpretrain's MAE data (random resized crops of
# data/imagenet/train) for level 1; the labelled data of levels 2 and 3 is a
# stratified 80/20 split (seed 0) of the same *train* set, recorded in
# work_dir/mlo_split/.  ImageNet-val is only for reporting: the loop stops
# with an error if the split shares a file with it.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs512_mae.py',
    './mlo_labelled_split.py',
]
_labelled_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs')
]
train_cfg = dict(
    labelled_split=dict(
        dataset=dict(
            _delete_=True,
            type='ImageNet',
            data_root='data/imagenet',
            split='train',
            pipeline=_labelled_pipeline),
        ratio=0.8,
        seed=0),
    train_split_dataloader=dict(batch_size=32, num_workers=8),
    val_split_dataloader=dict(batch_size=32, num_workers=8),
    heldout_datasets=[
        dict(type='ImageNet', data_root='data/imagenet', split='val',
             pipeline=[])
    ])
