"""FileListDataset: a lazy dataset over an explicit list of (image file, label) pairs.

What the GTSRB and Flower loaders return (their labels come from folder names,
CSV files or file numbers rather than ImageFolder's sorted class folders). Images
are read by robustops.data.folders.read_image (RGB float32 in [0, 1], a clear
ValueError naming an unreadable file).
"""
from __future__ import annotations

import os
import pathlib
from typing import Callable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..arguments import require_int, require_real
from .folders import read_image

__all__ = ["FileListDataset", "check_image_size", "split_indices"]


def check_image_size(image_size) -> Optional[int]:
    """image_size if it is None or an int >= 1: TypeError for another type, ValueError < 1."""
    return None if image_size is None else require_int(image_size, "image_size", minimum=1,
                                                       what="a positive int or None")


def split_indices(labels: Tensor, split: str, *, seed: int, test_fraction: float,
                  val_fraction: float = 0.0) -> Tensor:
    """Deterministic stratified 'train' | 'val' | 'test' | 'all' indices of a labelled set.

    test takes round(N * test_fraction) samples (robustops.data.digits.stratified_split,
    seeded); val (only when val_fraction > 0) takes round(N_rest * val_fraction) of the
    rest with seed + 1; train is what remains. The same seed gives the same split anywhere.
    """
    from .digits import stratified_split

    if split not in ("train", "val", "test", "all"):
        raise ValueError(f"split must be 'train', 'val', 'test' or 'all', got {split!r}")
    n = labels.numel()
    if split == "all":
        return torch.arange(n)
    rest, test = stratified_split(labels, test_fraction, seed)
    if split == "test":
        return test
    require_real(val_fraction, "val_fraction", low=0, high=1, high_open=True)
    if val_fraction == 0.0:
        if split == "val":
            raise ValueError("split='val' needs val_fraction > 0")
        return rest
    tr, va = stratified_split(labels[rest], val_fraction, seed + 1)
    return rest[va] if split == "val" else rest[tr]


class FileListDataset(Dataset):
    """ds[i] -> ((3, S, S) float32 in [0, 1], label int64) for files[i], labels[i].

    image_size: resize to S x S (None keeps sizes); boxes: optional (x1, y1, x2, y2)
    crop per file (GTSRB's regions of interest) applied before resizing; transform:
    applied to the tensor.
    """

    def __init__(self, files: Sequence[os.PathLike], labels: Sequence[int],
                 image_size: Optional[int] = None,
                 boxes: Optional[Sequence[Optional[Tuple[int, int, int, int]]]] = None,
                 transform: Optional[Callable[[Tensor], Tensor]] = None,
                 classes: Optional[List[str]] = None):
        if len(files) != len(labels):
            raise ValueError(f"{len(files)} files but {len(labels)} labels")
        if boxes is not None and len(boxes) != len(files):
            raise ValueError(f"{len(boxes)} boxes for {len(files)} files")
        self.files = [pathlib.Path(f) for f in files]
        self._labels = torch.as_tensor(list(labels), dtype=torch.int64)
        self.image_size = check_image_size(image_size)
        self.boxes = list(boxes) if boxes is not None else None
        self.transform = transform
        self.classes = classes

    @property
    def labels(self) -> Tensor:
        return self._labels.clone()

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        box = self.boxes[index] if self.boxes is not None else None
        if box is None:
            x = read_image(self.files[index], self.image_size)
        else:
            x = read_image(self.files[index])
            x1, y1, x2, y2 = box
            x = x[:, y1:y2 + 1, x1:x2 + 1]  # GTSRB's ROI corners are inclusive
            if self.image_size:
                x = torch.nn.functional.interpolate(
                    x[None], size=(self.image_size, self.image_size), mode="bilinear",
                    align_corners=False, antialias=True)[0].clamp_(0, 1)
        if self.transform is not None:
            x = self.transform(x)
        return x, self._labels[index].clone()

    def subset(self, indices: Tensor) -> "FileListDataset":
        idx = [int(i) for i in indices]
        return FileListDataset([self.files[i] for i in idx], [int(self._labels[i]) for i in idx],
                               self.image_size,
                               None if self.boxes is None else [self.boxes[i] for i in idx],
                               self.transform, self.classes)

    def tensors(self) -> Tuple[Tensor, Tensor]:
        """Every image at once: (N, 3, S, S), (N,). Needs image_size (or equal sizes)."""
        xs = [self[i][0] for i in range(len(self))]
        if len({tuple(x.shape) for x in xs}) > 1:
            raise ValueError("images differ in size; pass image_size")
        if not xs:
            return torch.empty(0, 3, 0, 0), self.labels
        return torch.stack(xs), self.labels

    def __repr__(self) -> str:
        return f"FileListDataset(images={len(self)}, image_size={self.image_size})"
