"""Self-Guided MAE analysis of a checkpoint on a folder of images.

    python tools/analysis_tools/sg_analysis.py CONFIG [CHECKPOINT] --data DIR
        [--num-images 16] [--out-dir analysis] [--cfg-options ...]

Writes ``metrics.json`` (feature variance σF and similarity variance σS of
eq. 3, mean attention distance per encoder layer, exploitation rates
R_{V→O} / R_{M→O} per decoder layer under random masks (the rollout of
docs/self_guided_mae.md; ``exploitation_literal_eq6``: eq. 6 applied to
A = B as well, and the share of images whose switch decision R_{M→O} ≥
R_{V→O} the two readings disagree on), bi-partition gap μ_intra − μ_inter,
the features' mean token cosine, the Ncut solver's log and the agreement of
its split with the exact one (float64 eigh; the relevance uses the exact
one, as the generation pass does), and how many relevance maps float16
would make constant against the cache's per-image normalisation),
``metrics.png`` (those curves) and ``masks.png`` (rows: image | Ncut
bi-partition, object cluster bright | informed mask | relevance heat map).
Works for any MaskedMAE checkpoint of the package (every masking method)
and any pretraining config: the images are resized whole to the model's
input size (no random crop, no flip), so images of different sizes (ImageNet)
batch together.  The Ncut uses the features of SelfGuidedMAE's default:
the attention output A(XW^V) of ``--feature-layer`` (``--features blocks``:
the block output).
"""
import argparse
import json
import os
import os.path as osp

import numpy as np
import torch
from mmengine.config import DictAction
from PIL import Image

from mlmask_mm.evaluation import (attention_distance, bipartition_gap,
                                  feature_variance, similarity_variance)
from mlmask_mm.evaluation.checkpoint_images import build_model, whole_images
from mlmask_mm.models.maskers import (InformedMaskContext, SelfGuidedMasker,
                                      mask_from_ranking, num_visible)
from mlmask_mm.models.utils.block_walk import walk_decoder
from mlmask_mm.models.utils.exploitation import (SETS,
                                                 decoder_attention_rates)
from mlmask_mm.models.utils.relevance_cache import encode
from mlmask_mm.models.utils.self_guided_ncut import (
    affinity, fiedler_vector, fiedler_vector_exact, mean_token_cosine,
    object_relevance, spectrum_floor)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('config')
    p.add_argument('checkpoint', nargs='?')
    p.add_argument('--data', help='class-folder tree (default: the config '
                   'train set)')
    p.add_argument('--num-images', type=int, default=16)
    p.add_argument('--feature-layer', type=int, default=-2)
    p.add_argument('--features', choices=('values', 'blocks'),
                   default='values')
    p.add_argument('--out-dir', default='analysis')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    return p.parse_args()


def build(args):
    model, cfg = build_model(args.config, args.checkpoint, args.cfg_options)
    return model, whole_images(model, cfg, args.data, args.num_images)


def literal_eq6_rates(attentions, mask):
    """Eq. 6 read literally for all four pairs, A = B included:
    R^(l)_{A→B} = r_{A→B} R^(l−1)_{A→A} + r_{B→B} R^(l−1)_{A→B} (so
    R_{A→A} ← 2 r_{A→A} R_{A→A}), every R^(0) = 1, and eq. 7; the last
    layer's per-image R_VO, R_MO.  Not mass-conserving (the rates grow
    without bound); shown against the rollout the package uses."""
    member = {'M': mask.to(attentions[0].dtype)}
    member['V'] = 1 - member['M']
    size = {k: member[k].sum(-1) for k in SETS}
    L = mask.shape[1]
    R = {(a, b): torch.ones_like(size['M']) for a in SETS for b in SETS}
    for attn in attentions:
        attn = attn / attn.sum(-1, keepdim=True)
        to = {c: (attn * member[c].unsqueeze(1)).sum(-1) for c in SETS}
        r = {(c, b): (to[c] * member[b]).sum(-1) / size[b]
             for c in SETS for b in SETS}
        R = {(a, b): r[(a, b)] * R[(a, a)] + r[(b, b)] * R[(a, b)]
             for a in SETS for b in SETS}
    return {f'R_{a}O': (size['M'] * R[(a, 'M')] + size['V'] * R[(a, 'V')])
            / L for a in SETS}


def split_agreement(y, ref):
    """Per image, the share of patches on the same side of the mean (up to
    the arbitrary sign)."""
    a = y > y.mean(-1, keepdim=True)
    b = ref > ref.mean(-1, keepdim=True)
    same = (a == b).double().mean(-1)
    return torch.maximum(same, 1 - same)


@torch.no_grad()
def analyse(model, inputs, feature_layer=-2, seed=0, features='values'):
    """All metrics as a JSON-able dict, plus what the picture needs."""
    backbone = model.backbone
    grid = tuple(backbone.patch_resolution)
    tokens = backbone.embed(inputs)
    walk = backbone.walk(tokens, return_blocks=True, return_attention=True,
                         return_values=True)
    enc_attn = walk.attention
    per_layer = [x[:, 1:] for x in walk.blocks]
    chosen = walk.values if features == 'values' else walk.blocks
    feats = chosen[feature_layer % len(chosen)][:, 1:].float()
    # the generation pass's exact cut, and the iterative solver against it
    exact, _ = fiedler_vector_exact(affinity(feats.double()))
    # as SelfGuidedMAE(generation='iteration'): float64 graph, float32
    # products
    x64 = feats.double()
    W = affinity(x64)
    y1, log = fiedler_vector(W, floor=spectrum_floor(x64, W), warn=False,
                             dtype=torch.float32)
    agree = split_agreement(y1.double(), exact)
    side = exact > exact.mean(-1, keepdim=True)
    anchor = exact.abs().argmax(-1, keepdim=True)
    obj = side == torch.gather(side, 1, anchor)
    relevance = object_relevance(feats.double(), exact)
    cached = encode(relevance)[0]
    cosine = mean_token_cosine(feats)
    ratio = model.masker.mask_ratio
    informed = SelfGuidedMasker(mask_ratio=ratio)(
        tokens, inputs, InformedMaskContext(grid, importance=cached.float()))
    g = torch.Generator().manual_seed(seed)
    B, L = tokens.shape[:2]
    random = mask_from_ranking(torch.rand(B, L, generator=g).to(tokens),
                               num_visible(L, ratio))
    rates = decoder_attention_rates(model, tokens, random)
    latent = backbone.encode_visible(tokens, random.ids_keep)
    dec_attn = walk_decoder(model.neck, latent, random.ids_restore,
                            return_attention=True).attention
    literal = literal_eq6_rates([a[:, 1:, 1:] for a in dec_attn],
                                random.mask)
    rollout_switch = rates[-1]['R_MO'] >= rates[-1]['R_VO']
    literal_switch = literal['R_MO'] >= literal['R_VO']
    metrics = dict(
        num_images=int(inputs.shape[0]),
        feature_layer=feature_layer,
        features=features,
        feature_variance=[float(feature_variance(f)) for f in per_layer],
        similarity_variance=[
            float(similarity_variance(f)) for f in per_layer
        ],
        attention_distance=[
            float(attention_distance(a[:, 1:, 1:], grid)) for a in enc_attn
        ],
        exploitation=[{k: float(v.mean()) for k, v in r.items()}
                      for r in rates],
        exploitation_literal_eq6=dict(
            {k: float(v.mean()) for k, v in literal.items()},
            decisions_disagreeing=float(
                (rollout_switch != literal_switch).double().mean())),
        bipartition_gap=float(bipartition_gap(feats, obj)),
        mean_token_cosine=dict(mean=float(cosine.mean()),
                               min=float(cosine.min()),
                               max=float(cosine.max())),
        solver=dict(log.summary(),
                    agreement_with_eigh_mean=float(agree.mean()),
                    agreement_with_eigh_min=float(agree.min())),
        relevance=dict(
            range_mean=float((relevance.amax(-1) -
                              relevance.amin(-1)).mean()),
            constant_as_float16=int(sum(
                len(r.half().unique()) == 1 for r in relevance)),
            constant_in_cache=int(sum(
                len(c.unique()) == 1 for c in cached))),
    )
    return metrics, obj, informed, relevance


def render(model, inputs, obj, informed, relevance, scale=4):
    """image | bi-partition | informed mask | relevance, one row per image."""
    from mlmask_mm.visualization.mask_grid import _heat, _to_uint8
    prep = model.data_preprocessor
    img = _to_uint8(inputs, prep.mean, prep.std)
    B, H, W, _ = img.shape
    h, w = model.backbone.patch_resolution

    def up(patch_map):  # B x L → B x H x W x 1
        m = patch_map.float().view(B, 1, h, w)
        m = torch.nn.functional.interpolate(m, size=(H, W), mode='nearest')
        return m[:, 0, ..., None].cpu().numpy()

    part = (img * (0.25 + 0.75 * up(obj))).astype(np.uint8)
    masked = np.where(up(informed.mask) > 0.5, 128, img).astype(np.uint8)
    cols = [img, part, masked, _heat(relevance, (H, W))]
    pad = 2
    out = np.full((B * (H + pad) + pad, len(cols) * (W + pad) + pad, 3), 255,
                  np.uint8)
    for r in range(B):
        for c, col in enumerate(cols):
            y, x = pad + r * (H + pad), pad + c * (W + pad)
            out[y:y + H, x:x + W] = col[r]
    return out.repeat(scale, 0).repeat(scale, 1)


def plot(metrics, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    axes[0].plot(metrics['feature_variance'], label='σF')
    axes[0].plot(metrics['similarity_variance'], label='σS')
    axes[0].set_xlabel('encoder layer')
    axes[0].legend()
    axes[1].plot(metrics['attention_distance'])
    axes[1].set_xlabel('encoder layer')
    axes[1].set_ylabel('attention distance (patches)')
    ex = metrics['exploitation']
    axes[2].plot([e['R_VO'] for e in ex], 'o-', label='R V→O')
    axes[2].plot([e['R_MO'] for e in ex], 's-', label='R M→O')
    axes[2].set_xlabel('decoder layer')
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main():
    args = parse_args()
    model, inputs = build(args)
    metrics, obj, informed, relevance = analyse(
        model, inputs, args.feature_layer, args.seed, args.features)
    os.makedirs(args.out_dir, exist_ok=True)
    with open(osp.join(args.out_dir, 'metrics.json'), 'w') as f:
        json.dump(metrics, f, indent=2)
    plot(metrics, osp.join(args.out_dir, 'metrics.png'))
    Image.fromarray(render(model, inputs, obj, informed, relevance)).save(
        osp.join(args.out_dir, 'masks.png'))
    print(json.dumps(metrics, indent=2))


if __name__ == '__main__':
    main()
