"""Where this package's configs/ and tools/ are, wherever it is installed.

A wheel ships them under ``mlmask_mm/.mim/`` (as OpenMMLab packages do,
setup.py); a source checkout (editable install, ``PYTHONPATH``) has them
beside the package.  mmengine reads ``_base_ = 'pkg::...'`` only for the
packages on its own list, so another project inherits a config of this
package through its path::

    # my_project/configs/my_mae.py
    _base_ = [__import__('mlmask_mm.paths').paths.config_path(
        'mae/mae_vit-tiny-p4_demo.py')]
    model = dict(masker=dict(type='BlockMasker'))

(mmengine evaluates the ``_base_`` expression alone, before the rest of the
file, hence ``__import__``.)  From a shell::

    python -m mlmask_mm.paths configs        # the configs folder
    bash $(python -m mlmask_mm.paths tools)/dist_train.sh CONFIG 8
"""
import os.path as osp
import sys
from typing import Optional, Sequence

PACKAGE_DIR = osp.dirname(osp.abspath(__file__))


def resource_root() -> str:
    """The folder holding ``configs/`` and ``tools/``: ``mlmask_mm/.mim``
    of an installed wheel, else the checkout the package was imported
    from."""
    candidates = (osp.join(PACKAGE_DIR, '.mim'), osp.dirname(PACKAGE_DIR))
    for root in candidates:
        if all(osp.isdir(osp.join(root, d)) for d in ('configs', 'tools')):
            return root
    raise FileNotFoundError(
        f'no configs/ and tools/ in {candidates[0]} (a wheel install) or '
        f'{candidates[1]} (a source checkout): reinstall mlmask_mm from its '
        'wheel or sources')


def _resolve(folder: str, name: str) -> str:
    path = osp.join(resource_root(), folder, name)
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'{name} is not in {osp.join(resource_root(), folder)}')
    return path


def config_path(name: str) -> str:
    """Absolute path of a config, by its path below ``configs/``
    (``'mae/mae_vit-tiny-p4_demo.py'``)."""
    return _resolve('configs', name)


def tool_path(name: str) -> str:
    """Absolute path of a script, by its path below ``tools/``
    (``'train.py'``, ``'model_converters/mlmask2backbone.py'``)."""
    return _resolve('tools', name)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or args[0] not in ('configs', 'tools', 'root'):
        print('usage: python -m mlmask_mm.paths configs|tools|root',
              file=sys.stderr)
        return 2
    root = resource_root()
    print(root if args[0] == 'root' else osp.join(root, args[0]))
    return 0


if __name__ == '__main__':
    sys.exit(main())
