"""Loaders for real dataset folders: ImageFolder trees and CIFAR python batches.

`read_image` is the one place an image file becomes a tensor (the cue-conflict
and ImageNet-C loaders use it too), so every loader reports an unreadable file
the same way: a ValueError naming the file.
"""
from __future__ import annotations

import os
import pathlib
import pickle
from typing import Callable, List, Optional, Tuple

import torch
from torch import Tensor
from torch.utils.data import Dataset, TensorDataset

from ..arguments import require_int

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp")


def read_image(path: os.PathLike, image_size: Optional[int] = None) -> Tensor:
    """One image file -> (3, H, W) float32 in [0, 1] (RGB; resized to image_size x
    image_size with bilinear filtering when image_size is given)."""
    from PIL import Image
    import numpy as np

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if image_size:
                im = im.resize((image_size, image_size), Image.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8).copy()
    except (OSError, ValueError, SyntaxError) as exc:  # PIL raises all three on bad files
        raise ValueError(f"{path} is not a readable image ({exc})") from exc
    return torch.from_numpy(arr).permute(2, 0, 1).float() / 255


class ImageFolderDataset(Dataset):
    """root/<class>/<image>: classes are the sorted sub-folder names; images are read
    lazily. ds[i] -> ((3, S, S) float32 in [0, 1], label int64).

    image_size: resize every image to a square of this side (None keeps sizes, which
    then cannot be batched unless they agree); transform: applied to the tensor.
    """

    def __init__(self, root: os.PathLike, image_size: Optional[int] = None,
                 transform: Optional[Callable[[Tensor], Tensor]] = None):
        root = pathlib.Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"image folder {root} does not exist")
        if image_size is not None:
            require_int(image_size, "image_size", minimum=1, what="a positive int or None")
        self.classes: List[str] = sorted(p.name for p in root.iterdir() if p.is_dir())
        if not self.classes:
            raise ValueError(f"{root} has no class sub-folders (expected root/<class>/<image>)")
        self.samples: List[Tuple[pathlib.Path, int]] = []
        for label, name in enumerate(self.classes):
            files = sorted(p for p in (root / name).rglob("*")
                           if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            self.samples += [(p, label) for p in files]
        if not self.samples:
            raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {root}")
        self.root, self.image_size, self.transform = root, image_size, transform

    @property
    def labels(self) -> Tensor:
        return torch.tensor([label for _, label in self.samples], dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        x = read_image(path, self.image_size)
        if self.transform is not None:
            x = self.transform(x)
        return x, torch.tensor(label, dtype=torch.int64)

    def tensors(self) -> Tuple[Tensor, Tensor]:
        """Every image at once: (N, 3, S, S), (N,). Needs image_size (or equal sizes)."""
        xs = [self[i][0] for i in range(len(self))]
        if len({tuple(x.shape) for x in xs}) > 1:
            raise ValueError(f"images under {self.root} differ in size; pass image_size")
        return torch.stack(xs), self.labels

    def __repr__(self) -> str:
        return (f"ImageFolderDataset(root={str(self.root)!r}, classes={len(self.classes)}, "
                f"images={len(self)}, image_size={self.image_size})")


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only what a CIFAR batch holds (dicts, lists, numpy arrays): a
    tampered file cannot run code."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch")


def _read_batch(path: pathlib.Path) -> dict:
    try:
        with open(path, "rb") as f:
            d = _ArrayUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path} is not a CIFAR python batch ({exc})") from exc
    if not isinstance(d, dict):
        raise ValueError(f"{path} is not a CIFAR python batch (holds {type(d).__name__})")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}


def load_cifar(root: os.PathLike, split: str = "train") -> TensorDataset:
    """CIFAR-10 (data_batch_1..5, test_batch) or CIFAR-100 (train, test; fine labels)
    python batches in root -> TensorDataset of (N, 3, 32, 32) float32 in [0, 1], (N,) int64.

    The extracted folder of the official archives (cifar-10-batches-py or cifar-100-python).
    """
    import numpy as np

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = pathlib.Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"CIFAR folder {root} does not exist")
    if (root / "test_batch").exists() or (root / "data_batch_1").exists():
        files = sorted(root.glob("data_batch_*")) if split == "train" else [root / "test_batch"]
        key = "labels"
    elif (root / split).exists():
        files, key = [root / split], "fine_labels"
    else:
        raise FileNotFoundError(f"{root} holds neither CIFAR-10 (data_batch_N, test_batch) nor "
                                f"CIFAR-100 (train, test) python batches")
    xs, ys = [], []
    for path in files:
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing")
        d = _read_batch(path)
        if "data" not in d or key not in d:
            raise ValueError(f"{path} lacks the 'data' or '{key}' entry of a CIFAR batch")
        data, labels = np.asarray(d["data"]), np.asarray(d[key])
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 \
                or labels.shape != (data.shape[0],):
            raise ValueError(f"{path}: expected uint8 data (N, 3072) and N labels, got "
                             f"{data.dtype} {data.shape} and {labels.shape} labels")
        xs.append(torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()))
        ys.append(torch.from_numpy(labels.astype(np.int64)))
    return TensorDataset(torch.cat(xs).float() / 255, torch.cat(ys))
