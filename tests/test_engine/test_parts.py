"""engine/parts.py and models/utils/parts.py: one optimizer per declared
part, the per-model refusal, and average_over_ranks (the distributed runs
are tested with CL-MAE and MLO-MAE in test_cl_mae.py / test_mlo_loop.py)."""
import pytest
import torch
from torch import nn

import mlmask_mm  # noqa: F401
from mlmask_mm.engine.parts import PartsOptimWrapperConstructor
from mlmask_mm.models.utils.parts import split_into_parts
from mlmask_mm.utils.dist import average_over_ranks


class ThreeParts(nn.Module):
    optim_parts = dict(head=('head', ), masker=('masker', 'scorer'))
    default_optim_part = 'mae'

    def __init__(self):
        super().__init__()
        self.backbone = nn.Linear(2, 2)
        self.neck = nn.Linear(2, 2)
        self.head = nn.Linear(2, 1)
        self.masker = nn.Linear(2, 1)
        self.scorer = nn.Linear(1, 1)

    @classmethod
    def check_optim_part(cls, part, cfg):
        if part == 'masker' and cfg.get('type') == 'AmpOptimWrapper':
            raise ValueError('refused by the model')


def sgd(lr):
    return dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=lr))


def test_each_child_goes_to_its_declared_part():
    model = ThreeParts()
    parts = split_into_parts(model)
    assert list(parts) == ['mae', 'head', 'masker']
    names = {k: sorted(n for n, _ in m.named_children())
             for k, m in parts.items()}
    assert names == dict(mae=['backbone', 'neck'], head=['head'],
                         masker=['masker', 'scorer'])
    wrappers = PartsOptimWrapperConstructor(
        dict(mae=sgd(1.), head=sgd(2.), masker=sgd(3.)))(model)
    ids = {k: {id(p) for g in w.optimizer.param_groups for p in g['params']}
           for k, w in wrappers.items()}
    for key, module in parts.items():
        assert ids[key] == {id(p) for p in module.parameters()}
    assert wrappers['head'].get_lr()['lr'] == [2.]
    # wrapped models (PartsDataParallel, DDP) are unwrapped
    holder = nn.Module()
    holder.module = model
    assert set(PartsOptimWrapperConstructor(
        dict(mae=sgd(1.), head=sgd(2.), masker=sgd(3.)))(holder).keys()) == {
            'mae', 'head', 'masker'}


def test_errors_name_the_setting():
    model = ThreeParts()
    with pytest.raises(ValueError, match=r"exactly the keys \['head', "):
        PartsOptimWrapperConstructor(dict(mae=sgd(1.), masker=sgd(1.)))(model)
    # a shared top-level type reaches every part, and the model refuses it
    with pytest.raises(ValueError, match='refused by the model'):
        PartsOptimWrapperConstructor(
            dict(type='AmpOptimWrapper', mae=sgd(1.), head=sgd(1.),
                 masker=sgd(1.)))(model)
    with pytest.raises(ValueError, match='paramwise_cfg inside'):
        PartsOptimWrapperConstructor(dict(mae=sgd(1.)), dict(norm_decay_mult=0))
    with pytest.raises(TypeError, match='does not declare'):
        PartsOptimWrapperConstructor(dict(mae=sgd(1.)))(nn.Linear(1, 1))
    model.masker.requires_grad_(False)
    model.scorer.requires_grad_(False)
    with pytest.raises(ValueError, match='no trainable parameter for '
                       'optim_wrapper.masker'):
        split_into_parts(model)


def test_average_over_ranks_is_a_no_op_in_one_process():
    t = torch.tensor([1., 2.])
    average_over_ranks([t, None])
    assert torch.equal(t, torch.tensor([1., 2.]))
