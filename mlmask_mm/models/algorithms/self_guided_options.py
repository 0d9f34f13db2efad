"""The options of :class:`~mlmask_mm.models.SelfGuidedMAE`, checked where
the config is read (``SelfGuidedMAE.options``, read-only).

Shin et al., NeurIPS 2024: the relevance features (A(XW^V), eq. 2), the
normalised cut that ranks the patches, when informed masking starts (the
exploitation rates' crossing, Fig. 4) and the hint ratio's linear decay;
see docs/self_guided_mae.md.
"""
from dataclasses import dataclass, field
from typing import Optional, Sequence, Tuple

GENERATIONS = ('once', 'refresh', 'iteration')
FEATURES = ('values', 'blocks')
CRITERIA = ('crossing', 'fixed')


def ncut_defaults() -> dict:
    """``model.ncut``'s defaults (see :class:`SelfGuidedOptions`)."""
    return dict(tau=0.0, eps=1e-5, tol=1e-4, max_iters=500, patience=48,
                block=4, power_steps=3, degenerate_cos=0.99)


def switch_defaults() -> dict:
    """``model.switch``'s defaults (see :class:`SelfGuidedOptions`)."""
    return dict(criterion='crossing', by_epoch=True, interval=1, earliest=1,
                fallback=None, start=None)


def measurement_defaults() -> dict:
    """``model.measurement``'s defaults (see :class:`SelfGuidedOptions`)."""
    return dict(num_images=256, seed=0)


def _merged(name: str, given: Optional[dict], defaults: dict) -> dict:
    """``defaults`` updated with ``given``; an unknown key is an error."""
    given = dict(given or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f'SelfGuidedMAE: unknown {name} settings {unknown}; '
                         f'allowed: {sorted(defaults)}')
    return {**defaults, **given}


@dataclass(frozen=True)
class SelfGuidedOptions:
    """The settings of :class:`~mlmask_mm.models.SelfGuidedMAE` that are not
    modules (its Args say what each means).

    ``ncut``, ``switch`` and ``measurement`` are dicts with every key
    (defaults filled in); ``hint_ratio`` is (h_T, h_end) as floats.
    """
    features: str = 'values'
    feature_layer: int = -2
    ncut: dict = field(default_factory=ncut_defaults)
    generation: str = 'once'
    refresh_interval: Optional[int] = None
    switch: dict = field(default_factory=switch_defaults)
    hint_ratio: Tuple[float, float] = (0.05, 0.0)
    measurement: dict = field(default_factory=measurement_defaults)

    @classmethod
    def from_config(cls, depth: int, features: str = 'values',
                    feature_layer: int = -2, ncut: Optional[dict] = None,
                    generation: str = 'once',
                    refresh_interval: Optional[int] = None,
                    switch: Optional[dict] = None,
                    hint_ratio: Sequence[float] = (0.05, 0.0),
                    measurement: Optional[dict] = None
                    ) -> 'SelfGuidedOptions':
        """Check the constructor's arguments for an encoder of ``depth``
        blocks, one clear error each."""
        if features not in FEATURES:
            raise ValueError(f'SelfGuidedMAE: features must be one of '
                             f'{FEATURES}, got {features!r}')
        if not -depth <= feature_layer < depth:
            raise ValueError(f'SelfGuidedMAE: feature_layer={feature_layer} '
                             f'is not a block of the {depth}-block encoder')
        ncut = _merged('ncut', ncut, ncut_defaults())
        if generation not in GENERATIONS:
            raise ValueError(f'SelfGuidedMAE: generation must be one of '
                             f'{GENERATIONS}, got {generation!r}')
        if (generation == 'refresh') != (refresh_interval is not None):
            raise ValueError(
                "SelfGuidedMAE: refresh_interval is set with (and only with) "
                f"generation='refresh', got generation={generation!r}, "
                f'refresh_interval={refresh_interval!r}')
        if refresh_interval is not None and (
                not isinstance(refresh_interval, int) or refresh_interval < 1):
            raise ValueError('SelfGuidedMAE: refresh_interval must be an '
                             f'integer >= 1, got {refresh_interval!r}')
        switch = _merged('switch', switch, switch_defaults())
        _check_switch(switch)
        h_t, h_end = hint_ratio
        for h in (h_t, h_end):
            if not 0 <= h < 1:
                raise ValueError(f'SelfGuidedMAE: hint_ratio={hint_ratio} '
                                 'must lie in [0, 1)')
        measurement = _merged('measurement', measurement,
                              measurement_defaults())
        return cls(features=features, feature_layer=feature_layer, ncut=ncut,
                   generation=generation, refresh_interval=refresh_interval,
                   switch=switch, hint_ratio=(float(h_t), float(h_end)),
                   measurement=measurement)


def _check_switch(sw: dict) -> None:
    """When informed masking starts: the criterion and its epochs."""
    if sw['criterion'] not in CRITERIA:
        raise ValueError(f'SelfGuidedMAE: switch.criterion must be one '
                         f"of {CRITERIA}, got {sw['criterion']!r}")
    if (sw['criterion'] == 'fixed') != (sw['start'] is not None):
        raise ValueError(
            "SelfGuidedMAE: switch.start is set with (and only with) "
            f"criterion='fixed', got {sw['criterion']!r}, "
            f"start={sw['start']!r}")
    if sw['fallback'] is not None and sw['fallback'] < sw['earliest']:
        raise ValueError(f"SelfGuidedMAE: switch.fallback="
                         f"{sw['fallback']} is before switch.earliest="
                         f"{sw['earliest']}")
    if not isinstance(sw['interval'], int) or sw['interval'] < 1:
        raise ValueError('SelfGuidedMAE: switch.interval must be an '
                         f"integer >= 1, got {sw['interval']!r}")
