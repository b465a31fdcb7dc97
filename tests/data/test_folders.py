"""Folder loaders on tiny fixtures the tests write: ImageFolder trees, CIFAR batches."""
import pickle

import numpy as np
import pytest
import torch

from robustops.data import ImageFolderDataset, load_cifar, read_image
from robustops.eval.corruption_benchmark import imagenet_c_folder


def _write_png(path, arr):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _tree(root):
    rng = np.random.default_rng(0)
    arrays = {}
    for cls in ("cat", "dog"):
        for i in range(3):
            a = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
            _write_png(root / cls / f"{i}.png", a)
            arrays[(cls, i)] = a
    (root / "dog" / "notes.txt").write_text("not an image")
    return arrays


def test_image_folder_reads_classes_and_pixels(tmp_path):
    arrays = _tree(tmp_path)
    ds = ImageFolderDataset(tmp_path)
    assert ds.classes == ["cat", "dog"] and len(ds) == 6
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    x, y = ds[4]
    assert int(y) == 1 and x.shape == (3, 6, 5) and x.dtype == torch.float32
    expect = torch.from_numpy(arrays[("dog", 1)]).permute(2, 0, 1).float() / 255
    assert torch.equal(x, expect)
    xs, ys = ImageFolderDataset(tmp_path, image_size=8).tensors()
    assert xs.shape == (6, 3, 8, 8) and 0 <= xs.min() and xs.max() <= 1


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolderDataset(tmp_path / "nope")
    with pytest.raises(ValueError, match="no class sub-folders"):
        ImageFolderDataset(tmp_path)
    (tmp_path / "a").mkdir()
    with pytest.raises(ValueError, match="no images"):
        ImageFolderDataset(tmp_path)
    (tmp_path / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    ds = ImageFolderDataset(tmp_path)
    with pytest.raises(ValueError, match="broken.png is not a readable image"):
        ds[0]
    with pytest.raises(ValueError, match="image_size"):
        ImageFolderDataset(tmp_path, image_size=0)


def test_imagenet_c_folder_layout(tmp_path):
    _tree(tmp_path / "fog" / "3")
    ds = imagenet_c_folder(tmp_path, "fog", 3, image_size=4)
    assert len(ds) == 6 and ds[0][0].shape == (3, 4, 4)
    with pytest.raises(FileNotFoundError, match="expected root/<corruption>"):
        imagenet_c_folder(tmp_path, "fog", 2)


def _cifar10(root, n=4):
    rng = np.random.default_rng(1)
    batches = {}
    for name in ["data_batch_1", "data_batch_2", "test_batch"]:
        d = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             b"labels": list(rng.integers(0, 10, n))}
        with open(root / name, "wb") as f:
            pickle.dump(d, f)
        batches[name] = d
    return batches


def test_cifar10_batches(tmp_path):
    b = _cifar10(tmp_path)
    train = load_cifar(tmp_path, "train")
    x, y = train.tensors
    assert x.shape == (8, 3, 32, 32) and y.tolist() == b["data_batch_1"][b"labels"] + b["data_batch_2"][b"labels"]
    # Row-major CHW: the first 1024 bytes are the red plane.
    assert torch.equal(x[0, 0].flatten(), torch.from_numpy(b["data_batch_1"][b"data"][0, :1024]).float() / 255)
    xt, yt = load_cifar(tmp_path, "test").tensors
    assert xt.shape == (4, 3, 32, 32) and yt.dtype == torch.int64


def test_cifar100_fine_labels(tmp_path):
    d = {b"data": np.zeros((3, 3072), np.uint8), b"fine_labels": [5, 99, 0],
         b"coarse_labels": [1, 2, 3]}
    with open(tmp_path / "train", "wb") as f:
        pickle.dump(d, f)
    _, y = load_cifar(tmp_path, "train").tensors
    assert y.tolist() == [5, 99, 0]


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_cifar_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither CIFAR-10"):
        load_cifar(tmp_path)
    with pytest.raises(ValueError, match="split"):
        load_cifar(tmp_path, "val")
    (tmp_path / "test_batch").write_bytes(b"\x80\x04truncated")
    with pytest.raises(ValueError, match="not a CIFAR python batch"):
        load_cifar(tmp_path, "test")
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": _Evil(), b"labels": [1]}, f)
    with pytest.raises(ValueError, match="refusing to load"):
        load_cifar(tmp_path, "test")
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [1, 2]}, f)
    with pytest.raises(ValueError, match=r"expected uint8 data \(N, 3072\)"):
        load_cifar(tmp_path, "test")


def test_read_image_resizes(tmp_path):
    _write_png(tmp_path / "a.png", np.full((10, 20, 3), 200, np.uint8))
    x = read_image(tmp_path / "a.png", 7)
    assert x.shape == (3, 7, 7) and torch.allclose(x, torch.full_like(x, 200 / 255))
