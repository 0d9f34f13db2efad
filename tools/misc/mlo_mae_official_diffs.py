"""Measured effect of the MLO-MAE settings taken from the official code
(docs/mlo_mae.md, table "Differences from the official code"), on the CPU
demo model (ViT 4x128, patch 4, the paper's masking network) and 16 demo
images, one outer step where a step is needed:

- masking network init, PyTorch default vs Xavier: mask_specificity and
  the position / image parts of p at initialisation;
- MLOClsHead init, PyTorch default vs Xavier: weight std at D = 128 and
  768, and the hypergradient's head share (head path / direct path);
- level-3 dropout on vs off: relative change of the hypergradient;
- masking network under bf16 autocast, fp32 vs bf16: distinct p per image.

    python tools/misc/mlo_mae_official_diffs.py
"""
import copy
import os.path as osp

import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.optim import OptimWrapper, OptimWrapperDict
from mmengine.registry import DefaultScope
from mmpretrain.structures import DataSample
from PIL import Image

import mlmask_mm  # noqa: F401
from mlmask_mm.models.utils import mask_specificity
from mlmask_mm.registry import MODELS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO = osp.join(REPO, 'configs/mlo_mae/mlo-mae_vit-tiny-p4_demo.py')


def demo_batch(n=16, offset=0):
    root = osp.join(REPO, 'data/cifar10_demo')
    classes = sorted(c for c in __import__('os').listdir(root)
                     if osp.isdir(osp.join(root, c)))
    imgs, samples = [], []
    for i in range(n):
        c = classes[i % len(classes)]
        files = sorted(__import__('os').listdir(osp.join(root, c)))
        img = Image.open(osp.join(root, c, files[offset + i // len(
            classes)])).convert('RGB')
        # BGR, as mmcv loads it (the preprocessor's to_rgb flips it)
        bgr = __import__('numpy').ascontiguousarray(
            __import__('numpy').asarray(img)[..., ::-1])
        imgs.append(torch.from_numpy(bgr).permute(2, 0, 1))
        samples.append(DataSample().set_gt_label(i % len(classes)))
    return dict(inputs=torch.stack(imgs), data_samples=samples)


def build(head=None, masker_xavier=False, seed=0):
    full = Config.fromfile(DEMO)
    cfg = full.model
    cfg.data_preprocessor = full.data_preprocessor
    if head == 'cls':
        cfg.feature = 'cls'
        cfg.downstream_head = dict(type='MLOClsHead', num_classes=10,
                                   in_channels=128, dropout=0.1,
                                   loss=dict(type='CrossEntropyLoss'))
    if masker_xavier:
        cfg.masker.init_cfg = dict(type='Xavier', layer='Linear',
                                   distribution='uniform')
    torch.manual_seed(seed)
    with DefaultScope.overwrite_default_scope('mlmask_mm'):
        model = MODELS.build(cfg)
    logger = MMLogger.get_current_instance()
    logger.setLevel('WARNING')
    model.init_weights()
    return model


def optimizers(model):
    return OptimWrapperDict(**{
        part: OptimWrapper(torch.optim.AdamW(
            list(model.part_params(part).values()), lr=lr))
        for part, lr in (('mae', 1.5e-3), ('head', 1e-3), ('masker', 1e-3))})


def p_stats(model, data):
    d = model.data_preprocessor(data, False)
    with torch.no_grad():
        tokens, res = model.mask(d['inputs'], d['data_samples'])
    p = res.scores
    return (f'mask_specificity {mask_specificity(res.mask).item():.3f}, '
            f'p std over positions {p.mean(0).std().item():.3f}, '
            f'over images {p.std(0).mean().item():.3f}, '
            f'saturated {((p < .01) | (p > .99)).float().mean().item():.2f}')


def main():
    data = demo_batch()
    train, val = demo_batch(offset=2), demo_batch(offset=4)
    for xavier in (False, True):
        model = build(masker_xavier=xavier)
        print(f'masking network init {"Xavier" if xavier else "PyTorch"}:',
              p_stats(model, data))
    for D in (128, 768):
        for xavier in (False, True):
            parent = torch.nn.Module()
            head = MODELS.build(dict(type='MLOClsHead', num_classes=10,
                                     in_channels=D))
            if xavier:
                torch.nn.init.xavier_uniform_(head.fc.weight)
            else:
                head.init_weights()
            print(f'MLOClsHead D={D} {"Xavier" if xavier else "PyTorch"}: '
                  f'W std {head.fc.weight.std().item():.4f}')
    for xavier in (False, True):
        model = build(head='cls')
        if xavier:
            torch.nn.init.xavier_uniform_(model.downstream_head.fc.weight)
            torch.nn.init.zeros_(model.downstream_head.fc.bias)
        logs = model.outer_step(data, train, val, optimizers(model), True)
        print(f'head share at init, MLOClsHead '
              f'{"Xavier" if xavier else "PyTorch"}: '
              f'{logs["hypergrad_head_share"].item():.2f}')
    grads = {}
    for dropout in (True, False):
        model = build(head='cls')
        model.downstream_head.dropout.p = 0.1 if dropout else 0.0
        torch.manual_seed(1)
        model.outer_step(data, train, val, optimizers(model), True)
        grads[dropout] = torch.cat([g.flatten() for g in
                                    model.last_hypergradient.values()])
    rel = (grads[True] - grads[False]).norm() / grads[False].norm()
    print(f'level-3 dropout 0.1 vs off: hypergradient differs by '
          f'{rel.item():.2f} (relative), cosine '
          f'{torch.nn.functional.cosine_similarity(grads[True], grads[False], 0).item():.3f}')
    model = build()
    d = model.data_preprocessor(data, False)
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        tokens = model.backbone.embed(d['inputs'])
        low = model.masker.network(tokens)
        fp32 = model.masker.probabilities(tokens)
    for name, p in (('bf16', low), ('fp32', fp32)):
        distinct = [len(torch.unique(r)) for r in p]
        print(f'masking network in {name} under autocast: distinct p per '
              f'image {min(distinct)}-{max(distinct)} of {p.shape[1]}')


if __name__ == '__main__':
    main()
