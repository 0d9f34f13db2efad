"""The training-step benchmark: time configs' training steps, interleaved,
in one process (CLI: ``tools/analysis_tools/benchmark.py``; see
docs/benchmarks.md).  Not part of the installed package: imported with
``tools/`` on ``sys.path``."""
from .compare import benchmark_configs, variant_name
from .step_config import crop_size, load_config, set_precision
from .synthetic_batch import activate_informed_masking, synthetic_batch
from .timing import (PeakMemory, environment, ratio_table, summarise, sync,
                     time_interleaved, write_json)
from .training_step import TrainStepVariant

__all__ = [
    'PeakMemory', 'environment', 'ratio_table', 'summarise', 'sync',
    'time_interleaved', 'write_json', 'TrainStepVariant',
    'activate_informed_masking', 'benchmark_configs', 'crop_size',
    'load_config', 'set_precision', 'synthetic_batch', 'variant_name'
]
