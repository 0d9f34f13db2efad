# CL-MAE's published setting (docs/cl_mae.md), shared by the configs of
# configs/cl_mae/: the objective's weights, the masking module and the
# curriculum.  A config sets `model = dict(_base_.cl_objective, ...)` with
# `masker=dict(_base_.cl_masker, ...)` and lists `_base_.cl_curriculum_hook`.
# the module step every iteration; λ_bin 1.0, λ_kl 0.1 (L_kl summed over
# the batch), λ_div 2.0
cl_objective = dict(
    masker_update_interval=1,
    lambda_bin=1.0,
    lambda_kl=0.1,
    lambda_div=2.0,
    kl_reduction='sum')
# the official MaskingNet: Linear(D, L) on its learnable token, 4 heads,
# 5 blocks (the config adds its patches, width and mask ratio)
cl_masker = dict(
    type='CurriculumMasker', head='token', num_layers=5, num_heads=4)
# c(t): +1 (partner) -> -1 (adversary), linear, 0 skipped
cl_curriculum_hook = dict(
    type='CurriculumHook', start=1.0, end=-1.0, shape='linear',
    skip_zero=True)
# distributed runs: CL-MAE's own train_step averages the gradients
# (MMDistributedDataParallel would skip the module step)
model_wrapper_cfg = dict(type='PartsDataParallel')
