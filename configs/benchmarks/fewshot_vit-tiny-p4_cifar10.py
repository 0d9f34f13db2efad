# Few-shot linear probe as mmengine evaluation (the FewShotLinearProbe metric)
# of a ViT-tiny/4 32 px checkpoint (configs/mae/mae_vit-tiny-p4_demo.py, or
# any method's checkpoint with that backbone) on a CIFAR-10 few-shot tree:
#   python tools/dataset_converters/cifar10_fewshot_tree.py \
#       data/cifar10/train data/cifar10_fewshot
#   python tools/test.py configs/benchmarks/fewshot_vit-tiny-p4_cifar10.py \
#       work_dirs/demo/iter_400.pth
# Same numbers as tools/analysis_tools/fewshot.py with --feature cls_token --normalize l2
# (tested); the tool also compares several checkpoints, caches features and
# writes the table and the plot.
_base_ = ['../_base_/default_runtime.py']

img_size = 32
model = dict(
    type='FrozenFeatureExtractor',
    backbone=dict(
        type='MaskableViT',
        arch=dict(embed_dims=192, num_layers=12, num_heads=3,
                  feedforward_channels=768),
        img_size=img_size,
        patch_size=4),
    pooling='cls_token',
    # the normalisation of the CIFAR-10 pretraining configs
    data_preprocessor=dict(
        type='ClsDataPreprocessor',
        mean=[125.3, 123.0, 113.9],
        std=[63.0, 62.1, 66.7],
        to_rgb=True))

test_dataloader = dict(
    batch_size=256,
    num_workers=2,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='FewShotFolders',
        data_root='data/cifar10_fewshot',  # train/<class>, test/<class>
        support='train',
        query='test',
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='ResizeEdge', scale=img_size, edge='short',
                 backend='pillow', interpolation='bicubic'),
            dict(type='CenterCrop', crop_size=img_size),
            dict(type='PackInputs'),
        ]))
test_evaluator = dict(type='FewShotLinearProbe', shots=(1, 2, 4, 8, 16),
                      seeds=3)
test_cfg = dict(type='TestLoop')
