# The Self-Guided MAE demo with the relevance recomputed on every training
# view (one extra no-grad encoder pass per step) instead of generated once.
_base_ = ['./sg-mae_vit-tiny-p4_demo.py']
model = dict(generation='iteration', ncut=dict(max_iters=100))
