# MAE's lr schedule, a linear warm-up then a cosine decay, as scheduler
# dicts without their lengths, which a config completes:
#   [dict(_base_.warmup_by_iter, end=warmup_iters),
#    dict(_base_.cosine_by_iter, begin=warmup_iters, end=max_iters)]
# by epoch (converted to iterations), with T_max = max - warm-up epochs:
#   [dict(_base_.warmup_by_epoch, end=warmup_epochs),
#    dict(_base_.cosine_by_epoch, T_max=max_epochs - warmup_epochs,
#         begin=warmup_epochs, end=max_epochs)]
warmup_by_iter = dict(
    type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0)
cosine_by_iter = dict(type='CosineAnnealingLR', by_epoch=False, eta_min=1e-5)
warmup_by_epoch = dict(
    type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0,
    convert_to_iter_based=True)
cosine_by_epoch = dict(
    type='CosineAnnealingLR', by_epoch=True, convert_to_iter_based=True)
