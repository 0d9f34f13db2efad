"""The options of :class:`~mlmask_mm.models.MLOMAE`, checked where the
config is read (``MLOMAE.options``, read-only).

The hypergradient (Guo et al., §3 eq. 4 and App. A) weighs its two paths by
ξ1 (level-1 step, the masking product) and ξ2 (level-2 step, the head
term): 1.0 is the official code's weighting (betty's darts, no learning-rate
factor); ``'lr'`` reads ξ from the 'mae' / 'head' optimizer's current
learning rate (the unrolled-SGD reading of App. A); see docs/mlo_mae.md.
"""
from dataclasses import asdict, dataclass, field, fields
from typing import Optional, Union

from ..utils import hypergrad as hg

FEATURES = ('gap', 'cls')
OFFICIAL_XI = 1.0
XI_FROM_LR = 'lr'


@dataclass(frozen=True)
class HypergradOptions:
    """``model.hypergrad``: how the masking network's hypergradient is
    computed (:func:`~mlmask_mm.models.utils.hypergrad.hypergradient`).

    Args:
        mode: 'exact' or 'finite_difference'.
        unroll_steps: K level-1 steps per outer iteration.
        unroll: 'exact' or 'last' (only the last level-1 step).
        fd_radius: r of ε = r / ‖v‖ (finite differences).
        head_term: 'double_backward' or 'finite_difference' (betty-style).
        xi1, xi2: weights of the level-1 / level-2 step, a number >= 0 or
            ``'lr'``.
    """
    mode: str = 'exact'
    unroll_steps: int = 1
    unroll: str = 'exact'
    fd_radius: float = 1e-2
    head_term: str = 'double_backward'
    xi1: Union[float, str] = OFFICIAL_XI
    xi2: Union[float, str] = OFFICIAL_XI

    def __post_init__(self) -> None:
        hg.check_options(self.mode, self.unroll, self.unroll_steps,
                         self.fd_radius, self.head_term)
        for key in ('xi1', 'xi2'):
            value = getattr(self, key)
            if value != XI_FROM_LR and not (
                    isinstance(value, (int, float))
                    and not isinstance(value, bool) and value >= 0):
                raise ValueError(
                    f'model.hypergrad.{key} must be a number >= 0 (1.0: the '
                    f"official weighting) or '{XI_FROM_LR}' (the optimizer's"
                    f' learning rate), got {value!r}')

    @classmethod
    def from_config(cls, cfg: Optional[dict]) -> 'HypergradOptions':
        """From ``model.hypergrad`` (``None``: every default)."""
        cfg = dict(cfg or {})
        known = [f.name for f in fields(cls)]
        unknown = set(cfg) - set(known)
        if unknown:
            raise ValueError(
                f'unknown model.hypergrad option(s) {sorted(unknown)}; '
                f'known: {sorted(known)}')
        return cls(**cfg)


#: ``model.hypergrad``'s defaults, as a dict
HYPERGRAD_DEFAULTS = asdict(HypergradOptions())


@dataclass(frozen=True)
class MLOMAEOptions:
    """The settings of :class:`~mlmask_mm.models.MLOMAE` that are not
    modules (see its Args)."""
    feature: str = 'gap'
    amp: Optional[str] = None
    learnable_pos_embed: bool = False
    hypergrad: HypergradOptions = field(default_factory=HypergradOptions)

    @classmethod
    def from_config(cls, feature: str = 'gap', amp: Optional[str] = None,
                    learnable_pos_embed: bool = False,
                    hypergrad: Optional[dict] = None,
                    compile: Union[bool, dict] = False) -> 'MLOMAEOptions':
        """Check the constructor's arguments, one clear error each
        (``compile`` is :class:`MaskedMAE`'s, refused with the exact
        hypergradient)."""
        if feature not in FEATURES:
            raise ValueError(f'MLOMAE feature must be one of {FEATURES}, '
                             f'got {feature!r}')
        if amp not in (None, 'bf16'):
            raise ValueError(f"MLOMAE amp must be None or 'bf16', got "
                             f'{amp!r}')
        mode = (hypergrad or {}).get('mode', HypergradOptions.mode)
        if compile and mode == 'exact':
            raise ValueError(
                "model.compile with model.hypergrad.mode='exact' is not "
                'supported: the exact hypergradient differentiates the '
                'encoder twice (double backward), which torch.compile '
                "(aot_autograd) does not support; use mode='finite_"
                "difference' with compile, or compile=False")
        return cls(feature=feature, amp=amp,
                   learnable_pos_embed=learnable_pos_embed,
                   hypergrad=HypergradOptions.from_config(hypergrad))
