"""Folder loaders of the robust-attribution datasets on tiny fixtures written here:
MNIST / Fashion-MNIST IDX files, GTSRB (official and Kaggle layouts), Flowers-17."""
import gzip
import struct

import numpy as np
import pytest
import torch

from robustops.data.flowers import load_flowers17
from robustops.data.gtsrb import load_gtsrb
from robustops.data.idx import load_fashion_mnist_idx, load_mnist_idx, read_idx

PIL = pytest.importorskip("PIL.Image")


def _write_idx(path, arr, gz):
    arr = np.asarray(arr)
    code = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}[arr.dtype]
    data = bytes([0, 0, code, arr.ndim]) + b"".join(struct.pack(">I", s) for s in arr.shape)
    data += arr.tobytes()
    (gzip.open if gz else open)(str(path) + (".gz" if gz else ""), "wb").write(data)


def _mnist_folder(root, gz=True, n_train=40, n_test=10):
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        _write_idx(root / f"{prefix}-images-idx3-ubyte", images, gz)
        _write_idx(root / f"{prefix}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8), gz)
    return root


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx(tmp_path, gz):
    root = _mnist_folder(tmp_path / "mnist", gz)
    train, test = load_mnist_idx(root), load_mnist_idx(root, "test")
    x, y = train.tensors
    assert x.shape == (40, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert 0 <= x.min() and x.max() <= 1 and y.tolist()[:12] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    raw = read_idx(root / ("train-images-idx3-ubyte" + (".gz" if gz else "")))
    torch.testing.assert_close(x[:, 0], torch.from_numpy(raw).float() / 255)
    assert len(test) == 10


def test_fashion_mnist_raw_subfolder_and_val_split(tmp_path):
    root = tmp_path / "FashionMNIST"
    _mnist_folder(root / "raw", gz=False)
    tr = load_fashion_mnist_idx(root, "train", val_fraction=0.25, seed=3)
    va = load_fashion_mnist_idx(root, "val", val_fraction=0.25, seed=3)
    assert len(tr) == 30 and len(va) == 10
    assert torch.bincount(va.tensors[1], minlength=10).tolist() == [1] * 10  # stratified
    again = load_fashion_mnist_idx(root, "val", val_fraction=0.25, seed=3)
    torch.testing.assert_close(again.tensors[0], va.tensors[0])
    # Disjoint: no validation image appears in train.
    flat_tr = {bytes(t.numpy().tobytes()) for t in tr.tensors[0]}
    assert not any(bytes(t.numpy().tobytes()) in flat_tr for t in va.tensors[0])


def test_idx_errors(tmp_path):
    root = _mnist_folder(tmp_path / "m", gz=False)
    (root / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(root / "bad")
    data = (root / "train-images-idx3-ubyte").read_bytes()
    (root / "cut").write_bytes(data[:-5])
    with pytest.raises(ValueError, match="bytes follow"):
        read_idx(root / "cut")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="t10k-images"):
        load_mnist_idx(tmp_path / "empty", "test")
    with pytest.raises(ValueError, match="split must be"):
        load_mnist_idx(root, "dev")
    with pytest.raises(ValueError, match="val_fraction"):
        load_mnist_idx(root, "val")


def _img(path, color, size=(6, 5)):
    PIL.new("RGB", size, color).save(path)


def _gtsrb_official(root):
    for cls, n in ((0, 3), (2, 2)):
        d = root / "Final_Training" / "Images" / f"{cls:05d}"
        d.mkdir(parents=True)
        rows = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
        for i in range(n):
            _img(d / f"00000_{i:05d}.ppm", (40 * cls, 10 * i, 200))
            rows.append(f"00000_{i:05d}.ppm;6;5;1;1;4;3;{cls}")
        (d / f"GT-{cls:05d}.csv").write_text("\n".join(rows) + "\n")
    t = root / "Final_Test" / "Images"
    t.mkdir(parents=True)
    rows = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
    for i, cls in enumerate((2, 0, 42)):
        _img(t / f"{i:05d}.ppm", (5 * cls, 0, 0))
        rows.append(f"{i:05d}.ppm;6;5;0;0;5;4;{cls}")
    (t / "GT-final_test.csv").write_text("\n".join(rows) + "\n")


def test_gtsrb_official_layout(tmp_path):
    _gtsrb_official(tmp_path)
    train = load_gtsrb(tmp_path, image_size=8)
    assert len(train) == 5 and train.labels.tolist() == [0, 0, 0, 2, 2]  # class ids, not positions
    x, y = train[3]
    assert x.shape == (3, 8, 8) and y.item() == 2
    test = load_gtsrb(tmp_path, "test", image_size=8)
    assert test.labels.tolist() == [2, 0, 42]
    xs, ys = test.tensors()
    assert xs.shape == (3, 3, 8, 8)
    cropped = load_gtsrb(tmp_path, image_size=None, crop_roi=True)
    assert cropped[0][0].shape == (3, 3, 4)  # ROI (1, 1)-(4, 3) inclusive
    tr = load_gtsrb(tmp_path, "train", val_fraction=0.4, seed=1)
    va = load_gtsrb(tmp_path, "val", val_fraction=0.4, seed=1)
    assert len(tr) + len(va) == 5 and not set(tr.files) & set(va.files)


def test_gtsrb_kaggle_layout_and_errors(tmp_path):
    for cls in (1, 3):
        d = tmp_path / "Train" / str(cls)
        d.mkdir(parents=True)
        _img(d / "a.png", (cls, cls, cls))
    (tmp_path / "Test").mkdir()
    _img(tmp_path / "Test" / "00000.png", (1, 2, 3))
    (tmp_path / "Test.csv").write_text("Width,Height,Roi.X1,Roi.Y1,Roi.X2,Roi.Y2,ClassId,Path\n"
                                       "6,5,0,0,5,4,3,Test/00000.png\n")
    assert load_gtsrb(tmp_path).labels.tolist() == [1, 3]
    assert load_gtsrb(tmp_path, "test").labels.tolist() == [3]
    with pytest.raises(FileNotFoundError, match="neither Final_Training"):
        load_gtsrb(tmp_path / "Test")
    with pytest.raises(ValueError, match="split must be"):
        load_gtsrb(tmp_path, "dev")
    bad = tmp_path / "bad"
    (bad / "Train" / "stop_sign").mkdir(parents=True)
    with pytest.raises(ValueError, match="named by class id"):
        load_gtsrb(bad)


def _flowers(root):
    (root / "jpg").mkdir(parents=True)
    for start in (1, 81, 161):
        for i in range(start, start + 6):
            _img(root / "jpg" / f"image_{i:04d}.jpg", (i % 256, 0, 0), size=(9, 7))
    (root / "jpg" / "notes.txt").write_text("ignored")


def test_flowers17_numbered_layout_and_deterministic_split(tmp_path):
    _flowers(tmp_path)
    full = load_flowers17(tmp_path, "all", image_size=16)
    assert len(full) == 18 and full.labels.tolist() == [0] * 6 + [1] * 6 + [2] * 6
    assert full[0][0].shape == (3, 16, 16)
    kw = dict(image_size=16, test_fraction=1 / 3, val_fraction=0.25, seed=4)
    tr, va, te = (load_flowers17(tmp_path, s, **kw) for s in ("train", "val", "test"))
    assert (len(tr), len(va), len(te)) == (9, 3, 6)
    assert torch.bincount(te.labels).tolist() == [2, 2, 2]
    assert not (set(tr.files) & set(te.files)) and not (set(va.files) & set(te.files))
    assert load_flowers17(tmp_path, "test", **kw).files == te.files
    assert load_flowers17(tmp_path, "test", **{**kw, "seed": 5}).files != te.files


def test_flowers_image_folder_layout_and_errors(tmp_path):
    for name in ("daisy", "tulip"):
        (tmp_path / name).mkdir()
        for i in range(3):
            _img(tmp_path / name / f"{i}.jpg", (i, 0, 0))
    ds = load_flowers17(tmp_path, "all", image_size=8)
    assert ds.classes == ["daisy", "tulip"] and ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    (tmp_path / "daisy" / "2.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="2.jpg is not a readable image"):
        ds[2]
    with pytest.raises(FileNotFoundError):
        load_flowers17(tmp_path / "nope")
    with pytest.raises(ValueError, match="split must be"):
        load_flowers17(tmp_path, "dev")
    with pytest.raises(ValueError, match="image_size"):
        load_flowers17(tmp_path, image_size=0)
