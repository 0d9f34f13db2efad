"""How the study runs its steps: the tools of a checkout, found under the
study's root (``--root DIR``, else the current working directory), run in
a subprocess with that root as working directory and ``PYTHONPATH`` (or in
this process, ``--in-process``); pretraining sittings timed across
restarts."""
import datetime
import json
import os
import os.path as osp
import runpy
import shlex
import subprocess
import sys
import time
from typing import Iterable, List, Optional, Sequence

#: the tools the study calls, below ROOT/tools/: the one place to update
#: when tools/ is reorganised
TOOLS = dict(
    train='train.py',
    test='test.py',
    convert='model_converters/mlmask2backbone.py',
    fewshot='analysis_tools/fewshot.py',
    init='misc/init_checkpoint.py',
    mask_content='analysis_tools/analyze_mask_content.py',
)


def study_root(root: Optional[str] = None) -> str:
    """The folder the study runs in: ``root`` (``--root``), else the
    current working directory; never the installed package's location."""
    return osp.abspath(root if root is not None else os.getcwd())


def tool(name: str, root: Optional[str] = None) -> str:
    """Absolute path of one of :data:`TOOLS` under ``ROOT/tools/``."""
    check_tools([name], root)
    return osp.join(study_root(root), 'tools', TOOLS[name])


def check_tools(names: Iterable[str], root: Optional[str] = None) -> None:
    """Refuse, in one error naming the root and every missing path, a root
    that lacks one of the tools ``names``."""
    root = study_root(root)
    missing = [osp.join(root, 'tools', TOOLS[n]) for n in names
               if not osp.isfile(osp.join(root, 'tools', TOOLS[n]))]
    if missing:
        raise FileNotFoundError(
            f'the study runs the tools of a checkout of mlmask_mm, and its '
            f'root {root} lacks {", ".join(missing)}: run it from the '
            'checkout\'s root folder or pass --root CHECKOUT (or update '
            f'TOOLS in {__file__})')


def python_command(name: str, args: Sequence[str],
                   root: Optional[str] = None) -> List[str]:
    return [sys.executable, tool(name, root), *map(str, args)]


def run_command(cmd: Sequence[str], log_file: Optional[str],
                in_process: bool = False,
                root: Optional[str] = None) -> float:
    """Run ``python TOOL ARGS``; returns the wall time in seconds.

    In a subprocess (default: stdout/stderr appended to ``log_file``, the
    working directory and first ``PYTHONPATH`` entry ``root``, where
    relative data paths start), or in this process through ``runpy``
    (``in_process``: no interpreter start, the tools share this process's
    imports and state; the working directory is ``root`` meanwhile).
    """
    root = study_root(root)
    start = time.time()
    if in_process:
        saved = sys.argv, os.getcwd()
        sys.argv = list(cmd[1:])
        os.chdir(root)
        try:
            runpy.run_path(cmd[1], run_name='__main__')
        except SystemExit as e:
            if e.code not in (None, 0):
                raise RuntimeError(f'{shlex.join(cmd)} exited with {e.code}')
        finally:
            sys.argv = saved[0]
            os.chdir(saved[1])
        return time.time() - start
    env = dict(os.environ)
    env['PYTHONPATH'] = root + (os.pathsep + env['PYTHONPATH']
                                if env.get('PYTHONPATH') else '')
    with open(log_file, 'a') as log:
        log.write(f'\n$ {shlex.join(cmd)}\n')
        log.flush()
        rc = subprocess.call(list(cmd), stdout=log, stderr=subprocess.STDOUT,
                             cwd=root, env=env)
    if rc != 0:
        with open(log_file) as f:
            tail = ''.join(f.readlines()[-30:])
        raise RuntimeError(f'{shlex.join(cmd)} failed (exit {rc}); the end '
                           f'of {log_file}:\n{tail}')
    return time.time() - start


def _add_sitting(run_dir: str, seconds: float, stopped: bool) -> None:
    timing = osp.join(run_dir, 'pretrain_time.json')
    t = dict(seconds=0.0, sittings=0, stopped_sittings=0)
    if osp.isfile(timing):
        t.update(read_json(timing))
    t['seconds'] += seconds
    t['sittings'] += 1
    t['stopped_sittings'] += int(stopped)
    write_json(t, timing)


def open_sitting(run_dir: str, work_dir: str) -> None:
    """Mark a pretraining sitting as started (``pretrain_sitting.json``).

    A marker left by an earlier sitting means that sitting was stopped
    (killed, or its training failed) before its time was recorded: its time
    is taken as the newest modification under ``work_dir`` (checkpoints,
    logs) minus its start, and added to ``pretrain_time.json`` as a stopped
    sitting.
    """
    marker = osp.join(run_dir, 'pretrain_sitting.json')
    os.makedirs(run_dir, exist_ok=True)
    if osp.isfile(marker):
        start = read_json(marker)['start']
        last = start
        for root, _, files in os.walk(work_dir):
            for f in files:
                last = max(last, osp.getmtime(osp.join(root, f)))
        _add_sitting(run_dir, last - start, stopped=True)
    write_json(dict(start=time.time()), marker)


def close_sitting(run_dir: str, seconds: float) -> None:
    """Record a finished sitting's wall time and remove its marker."""
    _add_sitting(run_dir, seconds, stopped=False)
    os.remove(osp.join(run_dir, 'pretrain_sitting.json'))


def read_json(path: str):
    with open(path) as f:
        return json.load(f)


def write_json(obj, path: str) -> None:
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime(
        '%Y-%m-%d %H:%M UTC')
