"""The parts of a model trained in parts (CL-MAE, MLO-MAE).

A model trained with one optimizer per part declares, as class attributes::

    optim_parts = dict(masker=('masker', ))  # part -> its children
    default_optim_part = 'mae'               # every other child

These helpers read that declaration; the model uses them to find a part's
parameters, :class:`~mlmask_mm.engine.parts.PartsOptimWrapperConstructor`
to build one optimizer per part.
"""
from typing import Dict

import torch.nn as nn


def part_of_children(model: nn.Module) -> Dict[str, str]:
    """``{child name: part}`` for every child of a model that declares
    ``optim_parts`` / ``default_optim_part`` (children not named in
    ``optim_parts`` belong to the default part)."""
    declared = getattr(model, 'optim_parts', None)
    default = getattr(model, 'default_optim_part', None)
    if not isinstance(declared, dict) or not default:
        raise TypeError(
            f'{type(model).__name__} does not declare its optimizer parts '
            '(class attributes optim_parts = {part: (child, ...)} and '
            'default_optim_part); PartsOptimWrapperConstructor is for '
            'models trained in parts such as CLMAE and MLOMAE')
    owner = {child: part for part, children in declared.items()
             for child in children}
    return {name: owner.get(name, default)
            for name, _ in model.named_children()}


def split_into_parts(model: nn.Module) -> Dict[str, nn.Module]:
    """``{part: nn.Module holding that part's children}`` of a model that
    declares ``optim_parts`` / ``default_optim_part``.

    Children keep their names, so parameter names (and the ``paramwise_cfg``
    keys matching them) are the model's.  A part without a trainable
    parameter is an error.
    """
    owners = part_of_children(model)  # checks the declaration
    declared = model.optim_parts
    parts = {part: nn.Module()
             for part in (model.default_optim_part, *declared)}
    for name, part in owners.items():
        parts[part].add_module(name, getattr(model, name))
    for part, module in parts.items():
        if not any(p.requires_grad for p in module.parameters()):
            raise ValueError(
                f'{type(model).__name__}: no trainable parameter for '
                f'optim_wrapper.{part} (children: '
                f'{[n for n, _ in model.named_children()]}, '
                f'optim_parts={declared})')
    return parts
