"""tools/dataset_converters/cifar_to_folders.py on tiny archives in the
official CIFAR-10 / CIFAR-100 python format, then a CIFAR-10 config trained
on the converted folders."""
import io
import os
import os.path as osp
import pickle
import tarfile

import numpy as np
import pytest
from conftest import REPO, load_tool
from mmengine.config import Config
from PIL import Image

CIFAR10_NAMES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog',
                 'frog', 'horse', 'ship', 'truck']


def _image_row(code: int, label: int) -> np.ndarray:
    """One official data row: 1,024 red bytes (= code), 1,024 green
    (= label), 1,024 blue (a gradient over the row index), so the PNG
    shows which archive image it came from and in which channel order."""
    blue = np.arange(1024) % 251
    return np.concatenate([np.full(1024, code), np.full(1024, label),
                           blue]).astype(np.uint8)


def _add(tar: tarfile.TarFile, name: str, obj: dict) -> None:
    raw = pickle.dumps(obj)
    info = tarfile.TarInfo(name)
    info.size = len(raw)
    tar.addfile(info, io.BytesIO(raw))


def make_cifar10_archive(path: str, per_batch: int = 20) -> dict:
    """Five training batches + a test batch of ``per_batch`` images each
    (label = 3 x code mod 10: every class, 10 training images each); returns ``{code: label}``."""
    codes = {}
    with tarfile.open(path, 'w:gz') as tar:
        _add(tar, 'cifar-10-batches-py/batches.meta',
             {b'label_names': [n.encode() for n in CIFAR10_NAMES],
              b'num_cases_per_batch': per_batch})
        code = 0
        for member in [f'data_batch_{i}' for i in range(1, 6)] + [
                'test_batch']:
            rows, labels = [], []
            for j in range(per_batch):
                label = (code * 3) % 10
                rows.append(_image_row(code, label))
                labels.append(label)
                codes[code] = label
                code += 1
            _add(tar, f'cifar-10-batches-py/{member}',
                 {b'data': np.stack(rows), b'labels': labels,
                  b'batch_label': member.encode(),
                  b'filenames': [b'x.png'] * per_batch})
    return codes


def _read(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert('RGB'))


@pytest.fixture(scope='module')
def tool():
    return load_tool('dataset_converters/cifar_to_folders')


@pytest.fixture(scope='module')
def cifar10(tmp_path_factory, tool):
    tmp = tmp_path_factory.mktemp('cifar10')
    archive = str(tmp / 'cifar-10-python.tar.gz')
    codes = make_cifar10_archive(archive)
    root = str(tmp / 'data' / 'cifar10')
    assert tool.main([archive, root]) == 0
    return root, codes


def test_cifar10_folders_hold_every_image_in_archive_order(cifar10):
    root, codes = cifar10
    # 100 training images (codes 0-99), 20 test images (codes 100-119)
    seen = {}
    for split in ('train', 'test'):
        for label, name in enumerate(CIFAR10_NAMES):
            files = sorted(os.listdir(osp.join(root, split, name)))
            assert files == [f'{i:04d}.png' for i in range(len(files))]
            got = [_read(osp.join(root, split, name, f)) for f in files]
            for image in got:
                # channel order: red plane = code, green = label, blue =
                # the row gradient laid out row-major
                assert (image[..., 1] == label).all()
                np.testing.assert_array_equal(
                    image[..., 2], (np.arange(1024) % 251).reshape(32, 32))
            split_codes = [int(g[0, 0, 0]) for g in got]
            # NNNN follows the archive's order (batch 1 first)
            assert split_codes == sorted(split_codes)
            seen.update({c: label for c in split_codes})
    assert seen == codes


def test_cifar10_lists_hold_out_the_last_tenth_of_each_class(cifar10):
    root, codes = cifar10
    lists = {k: open(osp.join(root, 'meta', f'{k}.txt')).read().split('\n')
             for k in ('train', 'val', 'test')}
    lists = {k: [r for r in v if r] for k, v in lists.items()}
    assert (len(lists['train']), len(lists['val']), len(lists['test'])) == (
        90, 10, 20)
    # 10 training images per class: 0000-0008 train, 0009 val (as
    # 0000-4499 / 4500-4999 of 5,000)
    assert sorted(lists['val']) == [f'{n}/0009.png {i}'
                                    for i, n in enumerate(CIFAR10_NAMES)]
    assert 'airplane/0008.png 0' in lists['train']
    assert not set(lists['train']) & set(lists['val'])
    for row in lists['train'] + lists['val']:
        path, label = row.split()
        assert CIFAR10_NAMES[int(label)] == path.split('/')[0]
        assert osp.isfile(osp.join(root, 'train', path))


def test_cifar100_fine_and_coarse_labels(tmp_path, tool):
    fine = [f'class{i:02d}' for i in range(4)]
    coarse = ['super0', 'super1']
    archive = str(tmp_path / 'cifar-100-python.tar.gz')
    with tarfile.open(archive, 'w:gz') as tar:
        _add(tar, 'cifar-100-python/meta',
             {b'fine_label_names': [n.encode() for n in fine],
              b'coarse_label_names': [n.encode() for n in coarse]})
        for member, n in (('train', 8), ('test', 4)):
            f_labels = [i % 4 for i in range(n)]
            _add(tar, f'cifar-100-python/{member}',
                 {b'data': np.stack([_image_row(i, f_labels[i])
                                     for i in range(n)]),
                  b'fine_labels': f_labels,
                  b'coarse_labels': [lab // 2 for lab in f_labels]})
    counts = tool.convert(archive, str(tmp_path / 'fine'), val_fraction=0.5)
    assert counts == dict(train=4, val=4, test=4)
    assert sorted(os.listdir(tmp_path / 'fine' / 'train')) == fine
    # class03 holds archive images 3 and 7: 0000 = 3 (train), 0001 = 7 (val)
    assert _read(str(tmp_path / 'fine/train/class03/0001.png'))[0, 0, 0] == 7
    assert 'class03/0001.png 3' in open(tmp_path / 'fine/meta/val.txt').read()
    counts = tool.convert(archive, str(tmp_path / 'coarse'),
                          labels='coarse', val_fraction=0)
    assert counts == dict(train=8, val=0, test=4)
    assert len(os.listdir(tmp_path / 'coarse/train/super1')) == 4


def test_bad_archives_name_the_problem(tmp_path, tool):
    with pytest.raises(FileNotFoundError, match='nothing.tar.gz'):
        tool.convert(str(tmp_path / 'nothing.tar.gz'), str(tmp_path / 'o'))
    other = str(tmp_path / 'other.tar.gz')
    with tarfile.open(other, 'w:gz') as tar:
        _add(tar, 'cifar-10-jpg/readme', {})
    with pytest.raises(ValueError, match='neither cifar-10-batches-py'):
        tool.convert(other, str(tmp_path / 'o'))
    partial = str(tmp_path / 'partial.tar.gz')
    with tarfile.open(partial, 'w:gz') as tar:
        _add(tar, 'cifar-10-batches-py/batches.meta',
             {b'label_names': [b'a']})
    with pytest.raises(ValueError, match='data_batch_1 is missing'):
        tool.convert(partial, str(tmp_path / 'o'))
    with pytest.raises(ValueError, match='--labels coarse'):
        tool.convert(partial, str(tmp_path / 'o'), labels='coarse')
    with pytest.raises(ValueError, match='--val-fraction 1'):
        tool.convert(partial, str(tmp_path / 'o'), val_fraction=1)


def test_refuses_to_mix_with_an_existing_tree(cifar10, tool, tmp_path):
    root, _ = cifar10
    with pytest.raises(FileExistsError, match='train is not empty'):
        tool.convert('unused.tar.gz', root)


@pytest.mark.slow
def test_cifar10_config_trains_on_the_converted_folders(
        cifar10, tmp_path, build_runner):
    """The CL-MAE CIFAR-10 config as shipped (ViT-tiny/4, 32 px, the
    `train` list), 2 iterations on the converted archive."""
    root, _ = cifar10
    cfg = Config.fromfile(osp.join(
        REPO, 'configs/cl_mae/cl-mae_vit-tiny-p4_1xb64-coslr-10k_cifar10.py'))
    loader = cfg.train_dataloader
    assert (loader.dataset.data_root, loader.dataset.data_prefix,
            loader.dataset.ann_file) == ('data/cifar10', 'train',
                                         'meta/train.txt')
    loader.dataset.data_root = root
    loader.update(batch_size=8, num_workers=0, persistent_workers=False)
    cfg.work_dir = str(tmp_path / 'work')
    cfg.train_cfg.max_iters = 2
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=2, by_epoch=False)
    cfg.custom_hooks = [h for h in cfg.custom_hooks
                        if h['type'] == 'CurriculumHook']
    runner = build_runner(cfg, 'cifar_converted')
    assert len(runner.train_dataloader.dataset) == 90  # the `train` list
    runner.train()
    assert runner.iter == 2
    assert osp.isfile(osp.join(cfg.work_dir, 'iter_2.pth'))
