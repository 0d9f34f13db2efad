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
