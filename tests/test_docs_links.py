"""The documentation points only at things that exist.

Pages checked: ``docs/*.md``, ``README.md``, ``configs/**/README.md`` and
``projects/**/README.md``.

1. **Markdown links** ``[text](target)`` and images ``![alt](target)``
   outside code: a relative target must exist (resolved from the page's
   folder); ``target#anchor`` and ``#anchor`` must name a heading of that
   markdown file, slugged as GitHub does (inline markup dropped, lower
   case, characters other than letters, digits, ``_``, ``-`` and spaces
   removed, spaces to ``-``, repeated headings ``-1``, ``-2``, ...). Links
   with a scheme (``https:``, ``mailto:``) are not checked.
2. **Repository paths in code** (inline code spans and fenced blocks): every
   path that starts with ``configs/``, ``tools/``, ``mlmask_mm/``,
   ``docs/``, ``tests/``, ``projects/`` or ``data/`` (not preceded by a
   path character, so ``../configs/x`` and ``$X/tools/y`` are not taken)
   must exist. A line suffix ``:N`` and a pytest node id ``::test_x`` end
   the path. A path of another repository or revision is written with its
   name before a colon (``mmdet:projects/ViTDet/README.md``,
   ``30fd7e6^:tools/benchmark.py``) and is not checked. Not checked either:

   - placeholders: a path followed directly by ``<``, ``*``, ``{``, ``$``
     or ``...``, or containing ``CONFIG``;
   - ``data/`` paths other than ``data/cifar10_demo`` (user data and
     outputs; ``data/cifar10_demo`` ships with the repository);
   - ``mlmask_mm/.mim/`` (made when the wheel is built).

3. ``docs/*.md`` total at most 2,500 lines: a new measurement updates a
   table row and adds one changelog line (docs/README.md).
"""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PREFIXES = ('configs', 'tools', 'mlmask_mm', 'docs', 'tests', 'projects',
            'data')
MAX_DOC_LINES = 2500

FENCE = re.compile(r'^\s*(```|~~~)')
CODE_SPAN = re.compile(r'(`+)(.+?)\1')
LINK = re.compile(r'!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?'
                  r'(?:\s+"[^"]*")?\s*\)')
HEADING = re.compile(r'^(#{1,6})\s+(.*?)\s*#*\s*$')
REPO_PATH = re.compile(
    r'(?<![\w./$:-])((?:' + '|'.join(PREFIXES) + r')/[\w./@+-]*)')


def doc_files():
    files = sorted(ROOT.glob('docs/*.md')) + [ROOT / 'README.md']
    files += sorted(ROOT.glob('configs/**/README.md'))
    files += sorted(ROOT.glob('projects/**/README.md'))
    return [f for f in files if f.is_file()]


def split_code(text):
    """(prose lines with code spans removed, code snippets) of a page.

    Prose lines keep their line numbers; code snippets are (line, text)
    for fenced lines and inline spans.
    """
    prose, code = [], []
    in_fence = False
    for n, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            code.append((n, line))
            prose.append((n, ''))
            continue
        code.extend((n, m.group(2)) for m in CODE_SPAN.finditer(line))
        prose.append((n, CODE_SPAN.sub('', line)))
    return prose, code


def slug(heading):
    text = re.sub(r'!?\[([^\]]*)\]\([^)]*\)', r'\1', heading)
    text = text.replace('`', '').replace('*', '')
    text = re.sub(r'<[^>]+>', '', text).strip().lower()
    text = re.sub(r'[^\w\- ]', '', text)
    return text.replace(' ', '-')


def heading_lines(path):
    """The GitHub anchors of a markdown file's headings (outside code)."""
    seen, result = {}, set()
    in_fence = False
    for line in path.read_text(encoding='utf-8').splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        m = None if in_fence else HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f'{base}-{count}')
    return result


def link_problems(page):
    problems = []
    prose, _ = split_code(page.read_text(encoding='utf-8'))
    for n, line in prose:
        for m in LINK.finditer(line):
            target = m.group(1)
            if re.match(r'^[a-zA-Z][\w+.-]*:', target):
                continue
            path_part, _, anchor = target.partition('#')
            dest = (page.parent / path_part).resolve() if path_part else page
            where = f'{page.relative_to(ROOT)}:{n}: ({target})'
            if not dest.exists():
                problems.append(f'{where} does not exist')
                continue
            if anchor and dest.suffix == '.md':
                if anchor.lower() not in heading_lines(dest):
                    problems.append(f'{where} has no heading #{anchor}')
    return problems


def skipped(path, rest):
    if rest.startswith(('<', '*', '{', '$', '...')) or 'CONFIG' in path:
        return True
    if path.endswith('...') or path.endswith('..'):
        return True
    if path.startswith('data/') and not path.startswith('data/cifar10_demo'):
        return True
    return path.startswith('mlmask_mm/.mim')


def path_problems(page):
    problems = []
    _, code = split_code(page.read_text(encoding='utf-8'))
    for n, snippet in code:
        for m in REPO_PATH.finditer(snippet):
            path = m.group(1).rstrip('.')
            if skipped(m.group(1), snippet[m.end():]):
                continue
            if not (ROOT / path).exists():
                problems.append(
                    f'{page.relative_to(ROOT)}:{n}: `{path}` does not exist')
    return problems


PAGES = doc_files()


@pytest.mark.parametrize('page', PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve(page):
    problems = link_problems(page)
    assert not problems, '\n'.join(problems)


@pytest.mark.parametrize('page', PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_repository_paths_exist(page):
    problems = path_problems(page)
    assert not problems, '\n'.join(problems)


def test_docs_stay_short():
    total = sum(
        len(p.read_text(encoding='utf-8').splitlines())
        for p in ROOT.glob('docs/*.md'))
    assert total <= MAX_DOC_LINES, (
        f'docs/*.md has {total} lines (at most {MAX_DOC_LINES}): update a '
        'table row and add one line to docs/changelog.md instead of a '
        'new section')


def test_slugs_follow_github():
    assert slug('Stage-II evaluation: the paper\'s linear-probe number') == \
        'stage-ii-evaluation-the-papers-linear-probe-number'
    assert slug('Images: `ImageFolder(bad_images=...)`') == \
        'images-imagefolderbad_images'
    assert slug('The hypergradient and its two paths (ξ1, ξ2)') == \
        'the-hypergradient-and-its-two-paths-ξ1-ξ2'
    assert slug('H200, ViT-B/16') == 'h200-vit-b16'
