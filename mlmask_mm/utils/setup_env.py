"""Adapt a config to the machine it runs on (before the Runner is built)."""
import torch
from mmengine.config import Config


def use_gloo_without_gpu(cfg: Config) -> Config:
    """Without a GPU: the gloo backend, and distributed runs on CPU.

    mmengine 0.10's ``init_dist('pytorch')`` calls ``torch.cuda.set_device``
    and its DDP wrapper passes ``device_ids=[LOCAL_RANK]``: both fail on a
    machine without CUDA.  For ``launcher='pytorch'`` (torchrun) the gloo
    process group is initialised here from torchrun's environment (the
    Runner then skips ``init_dist``) and the model is wrapped without device
    ids.  With a GPU the config is returned unchanged.
    """
    if torch.cuda.is_available():
        return cfg
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})
    cfg.env_cfg.dist_cfg['backend'] = 'gloo'
    if cfg.get('launcher', 'none') != 'pytorch':
        return cfg
    import torch.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group(
            backend='gloo', **{k: v for k, v in cfg.env_cfg.dist_cfg.items()
                               if k != 'backend'})
    wrapper = dict(cfg.get('model_wrapper_cfg') or {})
    wrapper.setdefault('type', 'MMDistributedDataParallel')
    wrapper.setdefault('broadcast_buffers', False)
    wrapper.setdefault('find_unused_parameters',
                       cfg.get('find_unused_parameters', False))
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    return cfg


def flush_denormal(cfg: Config) -> Config:
    """``env_cfg.flush_denormal=True``: subnormal floats (|x| < 1.2e-38 in
    float32) are flushed to zero on the CPU (``torch.set_flush_denormal``).

    Arithmetic on subnormals is many times slower on x86 CPUs; a masking
    module whose scores saturate produces them in its backward pass (CL-MAE
    at ViT-tiny/4: 1.43 s per iteration early, 1.8 s by iteration 2,000 of
    5,000; one step of the iteration-2,000 checkpoint 3.8 s without, 2.5-2.9
    s with flushing; docs/benchmarks.md).  Off by default, as in PyTorch; no
    effect on GPU kernels.  A CPU without the flag (no SSE3) is an error, not
    a silent no-op.
    """
    value = cfg.get('env_cfg', {}).get('flush_denormal', False)
    if not isinstance(value, bool):
        raise TypeError('env_cfg.flush_denormal must be True or False, got '
                        f'{value!r}')
    if value and not torch.set_flush_denormal(True):
        raise RuntimeError('env_cfg.flush_denormal=True: this CPU cannot '
                           'flush subnormal floats (torch.set_flush_denormal '
                           'returned False)')
    return cfg
