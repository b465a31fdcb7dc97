"""Oxford Flowers-17 (Nilsback & Zisserman, 2006; the "Flower" set of RAR / METHODS.md).

root/jpg/image_0001.jpg .. image_1360.jpg, 80 consecutive images per class (the
archive's layout: class = (number - 1) // 80), or any ImageFolder-style tree
root/<class>/<image> (classes sorted by name). There is no split in the file names,
so train / val / test come from one seeded stratified split (the same seed gives the
same split on every machine). Images load lazily, resized to image_size (default
128).
"""
from __future__ import annotations

import os
import pathlib
import re
from typing import Optional

from .folders import IMAGE_EXTENSIONS
from .image_files import FileListDataset, check_image_size, split_indices

__all__ = ["load_flowers17", "FLOWERS17_PER_CLASS"]

FLOWERS17_PER_CLASS = 80
_NUMBERED = re.compile(r"image_(\d+)\.jpg$", re.IGNORECASE)


def load_flowers17(root: os.PathLike, split: str = "train", *, image_size: Optional[int] = 128,
                   test_fraction: float = 0.2, val_fraction: float = 0.0, seed: int = 0,
                   transform=None) -> FileListDataset:
    """Flowers-17 under root as a lazy dataset: ds[i] -> ((3, S, S) float32 in [0, 1], label).

    split: 'train' | 'val' | 'test' | 'all'; test_fraction of all images is test,
    val_fraction of the rest is val (when > 0), both stratified and seeded by seed.
    """
    root = pathlib.Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Flowers folder {root} does not exist")
    check_image_size(image_size)
    jpg = root / "jpg"
    if jpg.is_dir():
        numbered = sorted((int(m.group(1)), p) for p in jpg.iterdir()
                          if (m := _NUMBERED.search(p.name)))
        if not numbered:
            raise ValueError(f"no image_NNNN.jpg files in {jpg}")
        files = [p for _, p in numbered]
        labels = [(num - 1) // FLOWERS17_PER_CLASS for num, _ in numbered]
        classes = None
    else:
        classes = sorted(p.name for p in root.iterdir() if p.is_dir())
        if not classes:
            raise FileNotFoundError(f"{root} holds neither jpg/image_NNNN.jpg (the Flowers-17 "
                                    f"archive) nor class sub-folders")
        files, labels = [], []
        for label, name in enumerate(classes):
            imgs = sorted(p for p in (root / name).rglob("*")
                          if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            files += imgs
            labels += [label] * len(imgs)
        if not files:
            raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {root}")
    ds = FileListDataset(files, labels, image_size, None, transform, classes)
    idx = split_indices(ds.labels, split, seed=seed, test_fraction=test_fraction,
                        val_fraction=val_fraction)
    return ds if split == "all" else ds.subset(idx)
