"""The equal-budget study harness (docs/study.md): pretrain, convert, probe
and tabulate configs under one compute budget, with the tools of a checkout.

Not part of the installed package: imported with ``tools/`` on
``sys.path`` (``tools/misc/study.py``, ``tools/misc/study_gpu.py``).

- :mod:`.study`: :class:`Study`, the runs planned and run;
- :mod:`.steps`, :mod:`.running`: each step's tool and how it runs (root,
  subprocess, sittings);
- :mod:`.data`, :mod:`.costs`, :mod:`.run_length`,
  :mod:`.pretrain_options`, :mod:`.linear_probe`: what each run is given;
- :mod:`.continued`, :mod:`.reuse`: ``--continue`` and ``--reuse``;
- :mod:`.report`, :mod:`.plot`: ``study.json``, ``study.md``,
  ``commands.sh``, ``study.png``;
- :mod:`.cli`, :mod:`.gpu_mode`: the command lines.
"""
from .cli import main, parse_args
from .costs import match_costs, parse_costs
from .linear_probe import probe_config
from .pretrain_options import pretrain_options, render_options
from .report import CONTENT_KEYS
from .running import TOOLS, check_tools, run_command, study_root, tool
from .study import DEFAULT_PROBE, RANDOM_INIT, Study

__all__ = [
    'main', 'parse_args', 'match_costs', 'parse_costs', 'probe_config',
    'pretrain_options', 'render_options', 'CONTENT_KEYS', 'TOOLS',
    'check_tools', 'run_command', 'study_root', 'tool', 'DEFAULT_PROBE',
    'RANDOM_INIT', 'Study'
]
