"""tools/misc/results_tables.py: the results tables of docs/results.md, the
config READMEs and the metafiles agree with the study JSONs; a changed
cell is caught and named; mean ± std is the sample std of the seeds; every
config is listed where a user looks for it."""
import glob
import json
import os
import os.path as osp
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml
from conftest import REPO, load_tool

rt = load_tool('misc/results_tables')
TOOL = osp.join(REPO, 'tools', 'misc', 'results_tables.py')
FOLDERS = ('mae', 'mlo_mae', 'sg_mae', 'cl_mae', 'benchmarks', 'transfer')


def _copy_checkout(dst):
    """The files the tool reads and writes, copied under ``dst``."""
    files = ['model-index.yml', 'docs/results.md'] + list(rt.STUDY_JSONS)
    files += list(rt.MARKDOWN_BLOCKS)
    files += yaml.safe_load(open(osp.join(REPO, 'model-index.yml')))['Import']
    for f in set(files):
        os.makedirs(osp.join(dst, osp.dirname(f)), exist_ok=True)
        shutil.copy(osp.join(REPO, f), osp.join(dst, f))
    return dst


def _check(root):
    return subprocess.run([sys.executable, TOOL, '--check', '--root', root],
                          capture_output=True, text=True)


def test_check_passes_on_the_repository():
    proc = _check(REPO)
    assert proc.returncode == 0, proc.stderr
    problems, _ = rt.run(REPO)
    assert problems == []


def test_a_changed_readme_cell_fails_naming_file_and_table(tmp_path):
    root = _copy_checkout(str(tmp_path))
    path = osp.join(root, 'configs', 'sg_mae', 'README.md')
    text = open(path).read()
    assert '45.1 ± 0.0' in text
    open(path, 'w').write(text.replace('45.1 ± 0.0', '46.1 ± 0.0', 1))
    proc = _check(root)
    assert proc.returncode == 1
    assert 'configs/sg_mae/README.md: table configs-sg_mae' in proc.stderr
    # --write repairs it
    subprocess.run([sys.executable, TOOL, '--write', '--root', root],
                   check=True, capture_output=True)
    assert open(path).read() == text
    assert _check(root).returncode == 0


def test_a_changed_results_md_cell_and_metafile_value_fail(tmp_path):
    root = _copy_checkout(str(tmp_path))
    path = osp.join(root, 'docs', 'results.md')
    text = open(path).read()
    block = re.search(r'<!-- results:compute-1k -->.*?<!-- /results', text,
                      re.S).group(0)
    open(path, 'w').write(text.replace(block, block.replace(
        '37.6 ± 1.2', '37.7 ± 1.2'), 1))
    meta = osp.join(root, 'configs', 'cl_mae', 'metafile.yml')
    mtext = open(meta).read()
    assert ': 33.3\n' in mtext
    open(meta, 'w').write(mtext.replace(': 33.3\n', ': 35.3\n', 1))
    proc = _check(root)
    assert proc.returncode == 1
    assert 'docs/results.md: table compute-1k' in proc.stderr
    assert ('configs/cl_mae/metafile.yml: Results of '
            'cl-mae_vit-tiny-p4_1xb64-coslr-10k_cifar10') in proc.stderr
    assert 'compute-5k' not in proc.stderr


def test_a_missing_block_is_named(tmp_path):
    root = _copy_checkout(str(tmp_path))
    path = osp.join(root, 'configs', 'mae', 'README.md')
    text = open(path).read()
    open(path, 'w').write(text.replace('<!-- /results:configs-mae -->', ''))
    proc = _check(root)
    assert proc.returncode != 0
    assert 'configs/mae/README.md: no <!-- results:configs-mae -->' in \
        proc.stderr


def test_mean_std_is_the_sample_std_of_the_runs():
    """From the per-run records, not the JSON's summary: numpy, ddof 1."""
    # the JSON with the most seeds for sg-mae at equal compute
    study = json.load(open(osp.join(REPO, 'docs',
                                    'study_cifar10_5k_seed2.json')))
    values = [r['metrics']['fewshot_500shot_top1'] for r in study['runs']
              if r['label'] == 'sg-mae']
    values = np.array(values)
    expected = f'{values.mean():.1f} ± {values.std(ddof=1):.1f}'
    text = open(osp.join(REPO, 'docs', 'results.md')).read()
    block = re.search(r'<!-- results:compute-5k -->(.*?)<!-- /results', text,
                      re.S).group(1)
    row = next(ln for ln in block.splitlines() if ln.startswith('| sg-mae '))
    header = next(ln for ln in block.splitlines() if ln.startswith('| label'))
    column = [c.strip() for c in header.split('|')].index('500/class')
    assert [c.strip() for c in row.split('|')][column] == expected
    mean, std = rt.mean_std(list(values))
    assert np.isclose(mean, values.mean())
    assert np.isclose(std, values.std(ddof=1))
    assert rt.mean_std([3.0]) == (3.0, None)
    # the metafile carries the mean, rounded to 2 decimals
    meta = yaml.safe_load(open(osp.join(REPO, 'configs', 'sg_mae',
                                        'metafile.yml')))
    model = next(m for m in meta['Models']
                 if m['Config'].endswith('sg-mae_vit-tiny-p4_demo.py'))
    result = next(r for r in model['Results']
                  if r['Task'].endswith('equal compute, 5,000 MAE steps'))
    assert result['Dataset'] == 'CIFAR-10'
    assert result['Metrics'][
        'Linear probe top-1 (mean-patch, L-BFGS, 500/class)'] == round(
            values.mean(), 2)


def test_the_json_with_more_seeds_wins(tmp_path):
    """A later JSON of a setting (one line in STUDY_JSONS) replaces a
    label's row when it has more seeds; a tie keeps the first."""
    root = _copy_checkout(str(tmp_path))
    study = json.load(open(osp.join(root, 'docs', 'study_cifar10_5k.json')))
    mae = next(s for s in study['summary'] if s['label'] == 'mae')
    stat = mae['metrics']['fewshot_500shot_top1']
    stat['values'] = stat['values'] + [50.0]
    mae['seeds'] = [0, 1, 2]
    study['summary'] = [mae]
    extra = 'docs/study_cifar10_5k_seed2.json'
    json.dump(study, open(osp.join(root, extra), 'w'))
    jsons = dict(rt.STUDY_JSONS)
    try:
        rt.STUDY_JSONS[extra] = 'compute-5k'
        studies = rt.load_studies(root)
    finally:
        rt.STUDY_JSONS.clear()
        rt.STUDY_JSONS.update(jsons)
    assert studies['compute-5k']['mae']['json'] == extra
    assert studies['compute-5k']['sg-mae']['json'] == \
        'docs/study_cifar10_5k.json'
    assert studies['epochs-5k']['mae']['json'] == \
        'docs/study_cifar10_5k_epochs.json'
    assert '(n=3)' in rt.render_headline(studies)


def test_every_config_is_listed_in_metafile_and_readme():
    index = yaml.safe_load(open(osp.join(REPO, 'model-index.yml')))
    assert sorted(index['Import']) == sorted(
        f'configs/{f}/metafile.yml' for f in FOLDERS)
    for metafile in index['Import']:
        meta = yaml.safe_load(open(osp.join(REPO, metafile)))
        for model in meta['Models']:
            assert osp.isfile(osp.join(REPO, model['Config'])), model
            for result in model['Results'] or []:
                assert set(result) == {'Task', 'Dataset', 'Metrics'}
    for folder in FOLDERS:
        readme = open(osp.join(REPO, 'configs', folder, 'README.md')).read()
        for cfg in glob.glob(osp.join(REPO, 'configs', folder, '*.py')):
            assert f'`{osp.basename(cfg)}`' in readme, (folder, cfg)


def _anchors(path):
    """GitHub's heading anchors of a markdown file."""
    heads = re.findall(r'^#+ (.*)$', open(path).read(), re.M)
    return {re.sub(r'[^\w\- ]', '', h.strip().lower()).replace(' ', '-')
            for h in heads}


@pytest.mark.parametrize('page', [f'configs/{f}/README.md' for f in FOLDERS]
                         + ['docs/results.md'])
def test_relative_links_resolve(page):
    text = open(osp.join(REPO, page)).read()
    for target, anchor in re.findall(r'\]\(([^)#\s]*)(?:#([^)]*))?\)', text):
        if '://' in target:
            continue
        path = osp.join(REPO, osp.dirname(page), target) if target else \
            osp.join(REPO, page)
        assert osp.exists(path), f'{page}: {target}'
        if anchor and path.endswith('.md'):
            assert anchor in _anchors(path), f'{page}: {target}#{anchor}'


def test_results_md_is_short_and_states_the_rule():
    text = open(osp.join(REPO, 'docs', 'results.md')).read()
    assert len(text.splitlines()) <= 250
    assert 'level with plain MAE within seed noise' in text
    assert 'about one point above' not in text
