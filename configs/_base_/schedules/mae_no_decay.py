# MAE's paramwise rule (He et al., official code): no weight decay on norms,
# biases, the position embedding and the tokens.  Referenced as
# `paramwise_cfg=_base_.mae_no_decay` by the schedules of every method.
mae_no_decay = dict(
    custom_keys={
        'ln': dict(decay_mult=0.0),
        'bias': dict(decay_mult=0.0),
        'pos_embed': dict(decay_mult=0.),
        'mask_token': dict(decay_mult=0.),
        'cls_token': dict(decay_mult=0.)
    })
