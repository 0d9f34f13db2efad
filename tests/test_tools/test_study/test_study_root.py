"""The study's root (tools/study/running.py): the checkout whose tools/ it
runs is ``--root DIR`` or the current working directory, never the
installed package's location; a root without the tools is refused in one
error before anything runs."""
import os.path as osp
import subprocess
import sys

import pytest

from conftest import REPO, make_image_folder

sys.path.insert(0, osp.join(REPO, 'tools'))  # tools/study, not installed
import study  # noqa: E402

MAE_DEMO = osp.join(REPO, 'configs', 'mae', 'mae_vit-tiny-p4_demo.py')


def _argv(tmp_path, *extra):
    data = str(tmp_path / 'data')
    make_image_folder(osp.join(data, 'train'), ('a', 'b'), 4, seed=1)
    make_image_folder(osp.join(data, 'val'), ('a', 'b'), 2, seed=2)
    return [MAE_DEMO, '--data', data, '--iters', '4', '--seeds', '0',
            '--random-init', '--mask-content', '8', '--out-dir',
            str(tmp_path / 'out'), '--dry-run', *extra]


def test_root_given_from_another_folder_finds_the_tools(tmp_path,
                                                         monkeypatch):
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = study.main(_argv(tmp_path, '--root', REPO))
    tools = {c.split()[1] for c in result['commands']}
    assert tools == {osp.join(REPO, 'tools', t)
                     for t in study.TOOLS.values()}
    script = (tmp_path / 'out' / 'commands.sh').read_text()
    assert f'cd {REPO}\n' in script
    assert f'export PYTHONPATH={REPO}' in script
    # the default probe recipe comes from the root's configs/ too
    assert study.Study(study.parse_args(_argv(
        tmp_path, '--root', REPO))).probe == osp.join(
            REPO, 'configs', study.DEFAULT_PROBE)


@pytest.mark.parametrize('given', [True, False])
def test_a_root_without_the_tools_is_refused(tmp_path, monkeypatch, given):
    """--root elsewhere, or no --root from a folder that is no checkout
    (the package's own location is not a fallback)."""
    wrong = tmp_path / 'not_a_checkout'
    wrong.mkdir()
    monkeypatch.chdir(wrong if not given else tmp_path)
    extra = ['--root', str(wrong)] if given else []
    with pytest.raises(FileNotFoundError) as e:
        study.main(_argv(tmp_path, *extra))
    message = str(e.value)
    assert f'root {wrong} lacks' in message
    for name in ('train.py', 'test.py', 'misc/init_checkpoint.py'):
        assert osp.join(str(wrong), 'tools', name) in message
    assert 'run it from the checkout' in message and '--root' in message
    assert not osp.exists(tmp_path / 'out')


def test_cli_reports_a_wrong_root_in_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'misc', 'study.py'),
         *_argv(tmp_path, '--root', str(tmp_path))],
        cwd=str(tmp_path), capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.startswith(f'error: the study runs the tools of a '
                                  f'checkout of mlmask_mm, and its root '
                                  f'{tmp_path} lacks ')


def test_steps_run_in_the_root(tmp_path):
    script = tmp_path / 'tool.py'
    script.write_text('import os\nprint("cwd", os.getcwd())\n'
                      'print("path", os.environ["PYTHONPATH"])\n')
    log = str(tmp_path / 'step.log')
    study.run_command([sys.executable, str(script)], log, root=str(tmp_path))
    text = open(log).read()
    assert f'cwd {tmp_path}\n' in text
    assert f'path {tmp_path}' in text
