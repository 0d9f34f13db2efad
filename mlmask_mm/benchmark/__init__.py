"""Benchmarks: time training steps of configs, interleaved, in one process
(CLI: ``tools/analysis_tools/benchmark.py``; see docs/benchmarks.md)."""
from .timing import (PeakMemory, environment, ratio_table, summarise, sync,
                     time_interleaved, write_json)
from .training_step import (TrainStepVariant, activate_informed_masking,
                            benchmark_configs, crop_size, load_config,
                            set_precision, synthetic_batch)

__all__ = [
    'PeakMemory', 'environment', 'ratio_table', 'summarise', 'sync',
    'time_interleaved', 'write_json', 'TrainStepVariant',
    'activate_informed_masking', 'benchmark_configs', 'crop_size',
    'load_config', 'set_precision', 'synthetic_batch'
]
