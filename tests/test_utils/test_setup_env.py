"""``env_cfg.flush_denormal`` (mlmask_mm/utils/setup_env.py): subnormal
floats flushed to zero on every CPU thread once ``prepare_config`` has run,
as ``tools/train.py`` runs it; off by default; a bad value is refused."""
import subprocess
import sys

import pytest
from mmengine.config import Config

from mlmask_mm.engine.config_checks import prepare_config
from mlmask_mm.paths import config_path

# a subnormal float64 multiplied on two intra-op threads: with flushing every
# chunk gives 0 (flush-to-zero / denormals-are-zero on each worker thread),
# without it none does
_CHILD = r'''
import sys, torch
torch.set_num_threads(2)
from mmengine.config import Config
from mlmask_mm.engine.config_checks import prepare_config
from mlmask_mm.paths import config_path
cfg = Config.fromfile(config_path('mae/mae_vit-tiny-p4_demo.py'))
if sys.argv[1] != 'default':
    cfg.env_cfg.flush_denormal = sys.argv[1] == 'on'
prepare_config(cfg)
x = torch.full((1 << 20,), 1e-320, dtype=torch.float64)
print(int((x * 1.0).count_nonzero()), int((x + 0.0).count_nonzero()))
'''


def _nonzero(mode):
    out = subprocess.run([sys.executable, '-c', _CHILD, mode], check=True,
                         capture_output=True, text=True).stdout.split()
    return [int(v) for v in out]


@pytest.mark.slow
def test_flush_denormal_zeroes_subnormals_on_every_thread():
    assert _nonzero('on') == [0, 0]
    assert _nonzero('off') == [1 << 20, 1 << 20]
    assert _nonzero('default') == [1 << 20, 1 << 20]


def test_flush_denormal_must_be_a_bool():
    cfg = Config.fromfile(config_path('mae/mae_vit-tiny-p4_demo.py'))
    cfg.env_cfg.flush_denormal = 'yes'
    with pytest.raises(TypeError, match="env_cfg.flush_denormal.*'yes'"):
        prepare_config(cfg)
