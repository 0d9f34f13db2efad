"""Build hook: the wheel also ships configs/, tools/ and model-index.yml
under ``mlmask_mm/.mim/``, where OpenMMLab packages keep them (mmengine
looks for ``<package>/.mim/configs``, mim for ``.mim/model-index.yml``);
``mlmask_mm.paths`` finds them there.  The study and benchmark harnesses
(:data:`CHECKOUT_ONLY`) stay out: they run from a checkout.  The metadata
is in pyproject.toml.

An editable install (``pip install -e .``) copies nothing: there
``mlmask_mm.paths`` reads the checkout's own configs/ and tools/.
"""
import os
import os.path as osp
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = osp.dirname(osp.abspath(__file__))
MIM_FILES = ('configs', 'tools', 'model-index.yml')
#: below tools/: the harnesses and their command lines, not in the wheel
CHECKOUT_ONLY = ('study', 'benchmark', 'misc/study.py', 'misc/study_gpu.py',
                 'analysis_tools/benchmark.py')


def _ignore(src: str, names):
    """``shutil.copytree``'s ignore: caches and :data:`CHECKOUT_ONLY`."""
    rel = osp.relpath(src, osp.join(ROOT, 'tools')).replace(os.sep, '/')
    skip = {n for n in names if n == '__pycache__' or n.endswith('.pyc')}
    if not rel.startswith('..'):
        prefix = '' if rel == '.' else rel + '/'
        skip |= {n for n in names if prefix + n in CHECKOUT_ONLY}
    return skip


class BuildPyWithMim(build_py):
    """``build_py`` + a copy of :data:`MIM_FILES` into the built package."""

    def run(self):
        super().run()
        if getattr(self, 'editable_mode', False):
            return
        mim = osp.join(self.build_lib, 'mlmask_mm', '.mim')
        for name in MIM_FILES:
            src, dst = osp.join(ROOT, name), osp.join(mim, name)
            if not osp.exists(src):
                raise FileNotFoundError(
                    f'{src} is missing: the wheel ships it in mlmask_mm/.mim')
            if osp.isdir(dst):
                shutil.rmtree(dst)
            if osp.isdir(src):
                shutil.copytree(src, dst, ignore=_ignore)
            else:
                os.makedirs(mim, exist_ok=True)
                shutil.copy2(src, dst)


setup(cmdclass={'build_py': BuildPyWithMim})
