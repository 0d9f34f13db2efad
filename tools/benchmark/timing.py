"""Timing core: several variants timed interleaved in one process.

A *variant* is anything with a ``run(count)`` method that performs ``count``
units of work (here: training steps).  :func:`time_interleaved` warms each
variant up on its own (measuring its peak memory), then times them in turns:
in every turn each variant runs one *cycle* (a whole number of its steps, e.g.
the ``n`` steps between two masking-module updates), the order rotating from
turn to turn, so that load which comes and goes on a shared machine hits all
variants alike.  Results are per-step times (a cycle's time divided by its
steps), summarised by :func:`summarise`, written by :func:`write_json`.

Peak memory (:class:`PeakMemory`):

* CUDA: ``torch.cuda.max_memory_allocated`` after
  ``reset_peak_memory_stats``, minus what was allocated before the variant
  was built: the variant's weights, optimizer state and one step's
  activations;
* CPU: the process' peak resident set size (``VmHWM`` of
  ``/proc/self/status``, reset through ``/proc/self/clear_refs``), minus the
  resident size before the variant was built.  Memory that earlier variants
  freed and this one reuses is not counted again, so on CPU it is a lower
  bound; without ``clear_refs`` (not Linux) it is the process-wide
  ``ru_maxrss`` and not per variant (``kind`` says which).

Measured on the variant's build and warm-up steps, so ``warmup >= 1``.
See docs/benchmarks.md.
"""
import datetime
import gc
import json
import math
import os
import os.path as osp
import platform
import resource
import statistics
import time
from typing import Dict, List, Optional, Protocol, Sequence

import torch


class Steppable(Protocol):
    """What :func:`time_interleaved` times."""

    cycle: int  # steps per timed unit

    def build(self) -> None:
        """Create the model and optimizer (memory counted, not timed)."""

    def run(self, count: int) -> None:
        """``count`` steps (the caller synchronises the device)."""

    def end_warmup(self) -> None:
        """Called once after the variant's warm-up (optional)."""


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (no-op on CPU)."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


class PeakMemory:
    """Peak memory of one variant, on CUDA or CPU (see the module doc)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._base = 0.0
        if device.type == 'cuda':
            self.kind = ('cuda max_memory_allocated above the allocation '
                         'before the build')
        elif self._clear_refs():
            self.kind = ('cpu peak RSS (VmHWM) above the RSS before the '
                         'build (reused memory not counted: a lower bound)')
        else:
            self.kind = 'cpu peak RSS (ru_maxrss, process-wide, absolute)'

    @staticmethod
    def _clear_refs() -> bool:
        try:  # Linux >= 4.0: '5' resets VmHWM to the current RSS
            with open('/proc/self/clear_refs', 'w') as f:
                f.write('5')
            return True
        except OSError:
            return False

    @staticmethod
    def _status_mb(field: str) -> float:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1]) / 1024
        raise RuntimeError(f'/proc/self/status has no {field}')

    def start(self) -> None:
        """Begin a variant's measurement."""
        gc.collect()
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
            self._base = torch.cuda.memory_allocated(self.device) / 2**20
            torch.cuda.reset_peak_memory_stats(self.device)
        elif 'VmHWM' in self.kind:
            self._clear_refs()
            self._base = self._status_mb('VmRSS')

    def peak_mb(self) -> float:
        """The variant's peak since :meth:`start`, in MiB."""
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(
                self.device) / 2**20 - self._base
        if 'VmHWM' in self.kind:
            return self._status_mb('VmHWM') - self._base
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_interleaved(variants: Dict[str, Steppable],
                     device: torch.device,
                     iters: int,
                     warmup: int,
                     memory: Optional[PeakMemory] = None
                     ) -> Dict[str, dict]:
    """Build and warm up each variant, then time them interleaved.

    Args:
        variants: name -> variant (built in this order).
        device: synchronised around every timed cycle.
        iters: timed steps per variant, rounded up to whole cycles.
        warmup: untimed steps per variant (rounded up to whole cycles),
            right after its build; peak memory is measured over both.
        memory: the peak-memory probe (default: one for ``device``).

    Returns:
        name -> dict(times=[seconds per step, one per timed cycle],
        steps=timed steps, first_step_s=the first warm-up cycle's time per
        step (with ``torch.compile`` it includes the compilation),
        peak_mem_mb, build_s).
    """
    if iters < 1:
        raise ValueError(f'iters must be >= 1, got {iters}')
    if warmup < 1:
        raise ValueError(f'warmup must be >= 1 (peak memory is measured on '
                         f'the warm-up), got {warmup}')
    memory = memory or PeakMemory(device)
    out = {}
    for name, v in variants.items():
        memory.start()
        t0 = time.perf_counter()
        v.build()
        build_s = time.perf_counter() - t0
        first = None
        for _ in range(math.ceil(warmup / v.cycle)):
            sync(device)
            t0 = time.perf_counter()
            v.run(v.cycle)
            sync(device)
            if first is None:
                first = (time.perf_counter() - t0) / v.cycle
        if hasattr(v, 'end_warmup'):
            v.end_warmup()
        out[name] = dict(times=[], steps=0, first_step_s=first,
                         peak_mem_mb=memory.peak_mb(), build_s=build_s)
    names = list(variants)
    turns = max(math.ceil(iters / variants[n].cycle) for n in names)
    for turn in range(turns):
        shift = turn % len(names)
        for name in names[shift:] + names[:shift]:
            v, res = variants[name], out[name]
            if res['steps'] >= iters:
                continue
            sync(device)
            t0 = time.perf_counter()
            v.run(v.cycle)
            sync(device)
            res['times'].append((time.perf_counter() - t0) / v.cycle)
            res['steps'] += v.cycle
    return out


def summarise(result: dict, batch_size: int) -> dict:
    """ms per step (median over the timed cycles, and their mean, min and
    max), images per second, first step, peak memory."""
    times = result['times']
    ms = statistics.median(times) * 1e3
    return dict(
        ms_per_step=ms,
        ms_per_step_mean=statistics.fmean(times) * 1e3,
        ms_per_step_min=min(times) * 1e3,
        ms_per_step_max=max(times) * 1e3,
        images_per_s=batch_size / (ms / 1e3),
        timed_steps=result['steps'],
        timed_cycles=len(times),
        first_step_ms=result['first_step_s'] * 1e3,
        build_s=result['build_s'],
        peak_mem_mb=result['peak_mem_mb'])


def device_name(device: torch.device) -> str:
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict:
    """Where and when: device, versions, threads, UTC time, load."""
    import mmengine
    return dict(
        device=str(device), device_name=device_name(device),
        torch=torch.__version__, mmengine=mmengine.__version__,
        cuda=torch.version.cuda if device.type == 'cuda' else None,
        threads=torch.get_num_threads(), python=platform.python_version(),
        date=datetime.datetime.now(datetime.timezone.utc).strftime(
            '%Y-%m-%d %H:%M UTC'),
        loadavg=list(os.getloadavg()) if hasattr(os, 'getloadavg') else None)


def write_json(out: dict, path: Optional[str]) -> str:
    """``out`` as indented JSON text, also written to ``path`` if given."""
    text = json.dumps(out, indent=2)
    if path:
        folder = osp.dirname(osp.abspath(path))
        os.makedirs(folder, exist_ok=True)
        with open(path, 'w') as f:
            f.write(text + '\n')
    return text


def ratio_table(names: Sequence[str], results: Dict[str, dict]) -> List[str]:
    """Lines of a plain-text table: ms/step, images/s, peak memory and the
    ratio of each variant's step time to the first one's."""
    base = results[names[0]]['ms_per_step']
    width = max(len(n) for n in names)
    lines = [f'{"variant":<{width}}  {"ms/step":>9}  {"img/s":>9}  '
             f'{"peak MiB":>9}  {"x first":>7}']
    for n in names:
        r = results[n]
        lines.append(f'{n:<{width}}  {r["ms_per_step"]:9.2f}  '
                     f'{r["images_per_s"]:9.1f}  {r["peak_mem_mb"]:9.1f}  '
                     f'{r["ms_per_step"] / base:7.3f}')
    return lines
