"""GTSRB (German Traffic Sign Recognition Benchmark, 43 classes) from its extracted folders.

Two layouts are recognised under root:

- the official archives: ``Final_Training/Images/<class id 00000..00042>/*.ppm`` (each
  class folder with its ``GT-<class>.csv``) and ``Final_Test/Images/*.ppm`` with
  ``GT-final_test.csv`` (semicolon-separated: Filename;Width;Height;Roi.X1;Roi.Y1;
  Roi.X2;Roi.Y2;ClassId) in Final_Test/Images or root;
- Kaggle's: ``Train/<class id>/*`` and ``Test.csv`` (comma-separated, with Path and
  ClassId columns) next to ``Test/``.

Labels are the class ids (folder names / ClassId), not positions in a sorted list, so
a partial copy keeps the official ids. The official test split is used for 'test';
'val' is a seeded stratified fraction of train. Images load lazily, resized to
image_size (default 32, as RAR); crop_roi crops to the annotated sign first (when
the CSV gives ROIs).
"""
from __future__ import annotations

import csv
import os
import pathlib
from typing import List, Optional, Tuple

from ..arguments import require_real
from .folders import IMAGE_EXTENSIONS
from .image_files import FileListDataset, check_image_size, split_indices

__all__ = ["load_gtsrb", "GTSRB_CLASSES"]

GTSRB_CLASSES = 43


def _read_csv(path: pathlib.Path, sep: str) -> List[dict]:
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f, delimiter=sep))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"{path} is not a readable GTSRB CSV ({exc})") from exc
    if not rows or "ClassId" not in rows[0]:
        raise ValueError(f"{path} has no ClassId column (expected a GTSRB ground-truth CSV)")
    return rows


def _roi(row: dict) -> Optional[Tuple[int, int, int, int]]:
    try:
        return tuple(int(row[k]) for k in ("Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2"))  # type: ignore
    except (KeyError, ValueError, TypeError):
        return None


def _class_folders(train_dir: pathlib.Path):
    files, labels, rois = [], [], []
    folders = sorted(p for p in train_dir.iterdir() if p.is_dir())
    for folder in folders:
        try:
            label = int(folder.name)
        except ValueError:
            raise ValueError(f"{folder}: GTSRB class folders are named by class id "
                             f"(00000..00042)") from None
        gt = sorted(folder.glob("GT-*.csv"))
        by_name = {}
        if gt:
            by_name = {r["Filename"]: _roi(r) for r in _read_csv(gt[0], ";") if "Filename" in r}
        for p in sorted(folder.iterdir()):
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS:
                files.append(p)
                labels.append(label)
                rois.append(by_name.get(p.name))
    return files, labels, rois


def _train_set(root: pathlib.Path):
    for train_dir in (root / "Final_Training" / "Images", root / "Train"):
        if train_dir.is_dir():
            files, labels, rois = _class_folders(train_dir)
            if not files:
                raise ValueError(f"no images under {train_dir}")
            return files, labels, rois
    raise FileNotFoundError(f"{root} holds neither Final_Training/Images (official GTSRB) nor "
                            f"Train/ (Kaggle layout)")


def _test_set(root: pathlib.Path):
    official = root / "Final_Test" / "Images"
    for gt in (official / "GT-final_test.csv", root / "GT-final_test.csv"):
        if gt.exists():
            rows = _read_csv(gt, ";")
            return ([official / r["Filename"] for r in rows], [int(r["ClassId"]) for r in rows],
                    [_roi(r) for r in rows])
    if (root / "Test.csv").exists():
        rows = _read_csv(root / "Test.csv", ",")
        return ([root / r["Path"] for r in rows], [int(r["ClassId"]) for r in rows],
                [_roi(r) for r in rows])
    raise FileNotFoundError(f"{root}: no GTSRB test labels (Final_Test/Images/GT-final_test.csv, "
                            f"GT-final_test.csv or Test.csv)")


def load_gtsrb(root: os.PathLike, split: str = "train", *, image_size: Optional[int] = 32,
               crop_roi: bool = False, val_fraction: float = 0.0, seed: int = 0,
               transform=None) -> FileListDataset:
    """GTSRB images under root as a lazy dataset: ds[i] -> ((3, S, S) float32 in [0, 1], label).

    split: 'train' | 'test' (official) | 'val' (seeded stratified val_fraction of train,
    which 'train' then excludes); labels: class ids 0..42.
    """
    root = pathlib.Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"GTSRB folder {root} does not exist")
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    check_image_size(image_size)
    files, labels, rois = _test_set(root) if split == "test" else _train_set(root)
    for p in files[:1] + files[-1:]:
        if not p.exists():
            raise FileNotFoundError(f"{p} (listed in the GTSRB labels) does not exist")
    bad = [lab for lab in labels if not 0 <= lab < GTSRB_CLASSES]
    if bad:
        raise ValueError(f"GTSRB class ids must be in 0..{GTSRB_CLASSES - 1}, got {bad[0]}")
    ds = FileListDataset(files, labels, image_size, rois if crop_roi else None, transform)
    if split == "test" or (split == "train" and val_fraction == 0.0):
        return ds
    require_real(val_fraction, "val_fraction", low=0, high=1, low_open=True, high_open=True,
                 what="a number in (0, 1) for split='val'")
    idx = split_indices(ds.labels, "test" if split == "val" else "train", seed=seed,
                        test_fraction=val_fraction)
    return ds.subset(idx)
