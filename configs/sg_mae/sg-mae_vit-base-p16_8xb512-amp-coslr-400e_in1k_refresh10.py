# Self-Guided MAE on ImageNet-1k with the relevance of every training image
# recomputed every 10 epochs after T (an option; the paper generates it
# once).  Per-iteration relevance: model.generation='iteration'.
_base_ = ['./sg-mae_vit-base-p16_8xb512-amp-coslr-400e_in1k.py']
model = dict(generation='refresh', refresh_interval=10)
