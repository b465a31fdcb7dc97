"""MNIST and Fashion-MNIST from their IDX files (the format LeCun's site and Zalando ship).

A folder holding train-images-idx3-ubyte, train-labels-idx1-ubyte,
t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (each optionally .gz; the folder
itself or its raw/ sub-folder, torchvision's layout) -> TensorDataset of
(N, 1, 28, 28) float32 in [0, 1] and (N,) int64. The official train/test split is
kept; a validation set can be carved from train by a seeded stratified split.
"""
from __future__ import annotations

import gzip
import os
import pathlib
from typing import Tuple

import numpy as np
import torch
from torch.utils.data import TensorDataset

from ..arguments import require_real
from .image_files import split_indices

__all__ = ["read_idx", "load_mnist_idx", "load_fashion_mnist_idx"]

# IDX type codes -> numpy dtypes (big-endian, as the format stores them).
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def read_idx(path: os.PathLike) -> np.ndarray:
    """One IDX file (plain or .gz) -> numpy array of its dtype and shape."""
    path = pathlib.Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise ValueError(f"{path} could not be read as an IDX file ({exc})") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {data[:4].hex()})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_TYPES[data[2]])
    count = int(np.prod(shape)) if shape else 1
    if len(data) - header != count * dtype.itemsize:
        raise ValueError(f"{path}: header says {shape} of {dtype} ({count * dtype.itemsize} bytes) "
                         f"but {len(data) - header} bytes follow")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


def _find(root: pathlib.Path, name: str) -> pathlib.Path:
    for folder in (root, root / "raw"):
        for candidate in (folder / name, folder / (name + ".gz")):
            if candidate.exists():
                return candidate
    raise FileNotFoundError(f"{name}[.gz] not found in {root} or {root / 'raw'}")


def _load_split(root: pathlib.Path, which: str) -> Tuple[torch.Tensor, torch.Tensor]:
    img_name, lab_name = _FILES[which]
    images, labels = read_idx(_find(root, img_name)), read_idx(_find(root, lab_name))
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(f"{root}: expected images (N, H, W) and N labels, got {images.shape} "
                         f"and {labels.shape}")
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    return x, torch.from_numpy(labels.astype(np.int64))


def load_mnist_idx(root: os.PathLike, split: str = "train", *, val_fraction: float = 0.0,
                   seed: int = 0) -> TensorDataset:
    """MNIST-format IDX files in root -> TensorDataset ((N, 1, H, W) float32 in [0, 1], (N,) int64).

    split: 'train' | 'test' (the official files) | 'val' (a seeded stratified
    val_fraction of train; 'train' then excludes it).
    """
    root = pathlib.Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"IDX folder {root} does not exist")
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    if split == "test":
        return TensorDataset(*_load_split(root, "test"))
    x, y = _load_split(root, "train")
    if val_fraction == 0.0 and split == "train":
        return TensorDataset(x, y)
    require_real(val_fraction, "val_fraction", low=0, high=1, low_open=True, high_open=True,
                 what="a number in (0, 1) for split='val'")
    idx = split_indices(y, "test" if split == "val" else "train", seed=seed,
                        test_fraction=val_fraction)
    return TensorDataset(x[idx], y[idx])


def load_fashion_mnist_idx(root: os.PathLike, split: str = "train", *, val_fraction: float = 0.0,
                           seed: int = 0) -> TensorDataset:
    """Fashion-MNIST (same IDX file names and format as MNIST); see load_mnist_idx."""
    return load_mnist_idx(root, split, val_fraction=val_fraction, seed=seed)
