# The labelled data of MLO-MAE's levels 2 (head) and 3 (masking network): a
# stratified, seeded split of a labelled *training* set, recorded in
# work_dir/mlo_split/{train,val}.txt and split.json.  Here: the class
# folders of the embedded demo set (32 px); other configs override
# train_cfg.labelled_split.dataset.  Leaf configs add max_iters/max_epochs.
labelled_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=32, backend='pillow',
         interpolation='bicubic'),
    dict(type='PackInputs')
]
_labelled_loader = dict(
    batch_size=64,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'))
train_cfg = dict(
    type='MLOTrainLoop',
    # update the masking network every n outer iterations (paper: 1)
    masker_update_interval=1,
    labelled_split=dict(
        dataset=dict(
            type='ImageFolder',
            data_root='data/cifar10_demo',
            with_label=True,
            pipeline=labelled_pipeline),
        ratio=0.8,  # level 2 (train) : level 3 (val) = 80 : 20 per class
        seed=0),
    train_split_dataloader=_labelled_loader,  # level 2
    val_split_dataloader=_labelled_loader,  # level 3
    # more datasets levels 2/3 must not share a file with (val_dataloader
    # and test_dataloader are always checked)
    heldout_datasets=[])
