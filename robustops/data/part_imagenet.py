"""PartImageNet-format loader: images + COCO-style part annotations -> (x, y, mask).

Layout (PartImageNet's; the paths are configurable)::

    root/images/<split>/<wnid>/<file_name>          (or root/images/<split>/<file_name>)
    root/annotations/<split>.json                   (or root/annotations/<split>/<split>.json)

The JSON is COCO-style:

- ``images``: [{"id", "file_name", "height", "width"}, ...]
- ``categories``: [{"id", "name", "supercategory"}, ...]: one per PART; the
  supercategory is the object class the part belongs to (PartImageNet: 40 parts of 11
  classes).
- ``annotations``: [{"id", "image_id", "category_id", "segmentation"}, ...]; the
  segmentation is a list of polygons [[x1, y1, x2, y2, ...], ...] (pixel coordinates)
  or RLE {"counts": [...] or "compressed string", "size": [height, width]} (COCO's
  column-major run lengths). Both are decoded by pycocotools (the COCO API that
  PartImageNet's own tools use: `pip install pycocotools`), so masks are the COCO
  API's pixel for pixel; robustops only checks the entries first, because
  pycocotools trusts them (an RLE whose counts exceed the image overruns its buffer).

Samples are (x (3, H, W) float32 in [0, 1], y () int64, mask (H, W) int64) with the
has-mask convention of robustops.data.part_targets: 0 = background, k = the
k-th part category (categories sorted by id, 1-based), later annotations drawn over
earlier ones. Classes are the supercategories in order of first appearance (categories
sorted by id); an image's label is the supercategory of its parts. An image without any
annotation has NO mask (all -1: part-less and unannotated cannot be told apart); its
label comes from the other images of its folder (the wnid), else it is an error.

Every annotation is checked when the dataset is built; malformed ones raise ValueError
naming the file, the entry and the problem. Images are read lazily.
"""
from __future__ import annotations

import json
import math
import os
import pathlib
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .part_targets import NO_MASK, pack_part_targets
from .folders import read_image
from .image_files import check_image_size

__all__ = ["PartImageNetDataset", "load_part_annotations", "rasterize_segmentation",
           "decode_rle"]

PathLike = Union[str, os.PathLike]


class _Bad(ValueError):
    pass


def _fail(path, where: str, problem: str):
    raise ValueError(f"{path}: {where}: {problem}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(float(v)))


# ----------------------------------------------------------------------------- RLE


def _coco_mask():
    """pycocotools.mask, or ImportError saying how to install it."""
    try:
        from pycocotools import mask
    except ImportError as exc:
        raise ImportError("COCO part masks (PartImageNet annotations) are decoded with "
                          "pycocotools: `pip install pycocotools`") from exc
    return mask


def _compressed_counts(s: str) -> List[int]:
    """Run lengths of COCO's compressed RLE string (the format of pycocotools' maskApi
    rleFrString), read only to check them before pycocotools decodes the string."""
    counts: List[int] = []
    p = 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            if p >= len(s):
                raise _Bad("compressed RLE string ends inside a number")
            c = ord(s[p]) - 48
            if not 0 <= c < 64:
                raise _Bad(f"compressed RLE string has an invalid character {s[p]!r}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def _checked_rle(rle: dict, height: int, width: int) -> dict:
    """The RLE as pycocotools takes it ({'size', 'counts': compressed bytes}), checked.

    Raises ValueError when the size disagrees with (height, width), a count is negative
    or the counts do not add up to height * width."""
    if not isinstance(rle, dict) or "counts" not in rle or "size" not in rle:
        raise _Bad("RLE segmentation must be a dict with 'counts' and 'size'")
    size = rle["size"]
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(_is_int(v) for v in size)):
        raise _Bad(f"RLE 'size' must be [height, width], got {size!r}")
    if list(size) != [height, width]:
        raise _Bad(f"RLE size {list(size)} does not match the image's [height, width] = "
                   f"[{height}, {width}]")
    raw = rle["counts"]
    counts = raw
    if isinstance(raw, (str, bytes)):
        counts = _compressed_counts(raw.decode() if isinstance(raw, bytes) else raw)
    elif not (isinstance(counts, list) and all(_is_int(v) for v in counts)):
        raise _Bad("RLE 'counts' must be a list of ints or a compressed string")
    if any(v < 0 for v in counts):
        raise _Bad("RLE counts must be >= 0")
    total = sum(counts)
    if total != height * width:
        raise _Bad(f"RLE counts add up to {total} pixels, the image has {height} x {width} = "
                   f"{height * width}")
    if isinstance(raw, (str, bytes)):
        return {"size": [height, width], "counts": raw.encode() if isinstance(raw, str) else raw}
    # Uncompressed counts: pycocotools compresses them (frPyObjects' uncompressed-RLE path).
    return _coco_mask().frPyObjects({"size": [height, width], "counts": list(counts)},
                                    height, width)


def decode_rle(rle: dict, height: int, width: int) -> np.ndarray:
    """COCO RLE (uncompressed counts list or compressed string) -> (H, W) bool mask,
    decoded by pycocotools after the checks of _checked_rle (ValueError)."""
    return _coco_mask().decode(_checked_rle(rle, height, width)).astype(bool)


# ----------------------------------------------------------------------------- polygons


def _check_polygons(seg) -> None:
    if not isinstance(seg, list) or not seg:
        raise _Bad("polygon segmentation must be a non-empty list of polygons "
                   "[[x1, y1, x2, y2, ...], ...]")
    for j, poly in enumerate(seg):
        if not isinstance(poly, list) or not all(_is_number(v) for v in poly):
            raise _Bad(f"polygon {j} must be a flat list of finite numbers [x1, y1, x2, y2, ...]")
        if len(poly) % 2:
            raise _Bad(f"polygon {j} has an odd number of coordinates ({len(poly)}); it needs "
                       "x, y pairs")
        if len(poly) < 6:
            raise _Bad(f"polygon {j} has {len(poly) // 2} points; a polygon needs at least 3")


def _check_segmentation(seg, height: int, width: int) -> None:
    if isinstance(seg, dict):
        _checked_rle(seg, height, width)
    elif isinstance(seg, list):
        _check_polygons(seg)
    else:
        raise _Bad(f"segmentation must be a list of polygons or an RLE dict, got "
                   f"{type(seg).__name__}")


def rasterize_segmentation(seg, height: int, width: int) -> np.ndarray:
    """One annotation's segmentation (polygons or RLE) -> (H, W) bool mask, as the COCO
    API's annToMask gives it (pycocotools: polygons rasterised and merged by union)."""
    if isinstance(seg, dict):
        return decode_rle(seg, height, width)
    _check_polygons(seg)
    mask = _coco_mask()
    polygons = [[float(v) for v in poly] for poly in seg]
    return mask.decode(mask.merge(mask.frPyObjects(polygons, height, width))).astype(bool)


# ----------------------------------------------------------------------------- JSON


def load_part_annotations(path: PathLike) -> dict:
    """Read and check a COCO-style part annotation file.

    Returns {"images": {id: entry}, "image_ids": [ids in file order], "categories":
    [entries sorted by id], "annotations": {image id: [annotations in file order]}}.
    Raises FileNotFoundError / ValueError (naming the file, entry and problem).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"part annotation file {path} does not exist")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc})") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not a UTF-8 text file ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the top level must be a JSON object with 'images', "
                         f"'annotations' and 'categories', got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise ValueError(f"{path}: missing top-level key {key!r} (a COCO-style part "
                             "annotation file has 'images', 'annotations' and 'categories')")
        if not isinstance(data[key], list):
            raise ValueError(f"{path}: {key!r} must be a list, got {type(data[key]).__name__}")

    images: Dict[int, dict] = {}
    for i, im in enumerate(data["images"]):
        where = f"images[{i}]"
        if not isinstance(im, dict):
            _fail(path, where, "must be an object")
        for key in ("id", "file_name", "height", "width"):
            if key not in im:
                _fail(path, where, f"missing key {key!r}")
        if not _is_int(im["id"]):
            _fail(path, where, f"'id' must be an int, got {im['id']!r}")
        if not isinstance(im["file_name"], str) or not im["file_name"]:
            _fail(path, where, "'file_name' must be a non-empty string")
        for key in ("height", "width"):
            if not _is_int(im[key]) or im[key] < 1:
                _fail(path, where, f"{key!r} must be an int >= 1, got {im[key]!r}")
        if im["id"] in images:
            _fail(path, where, f"duplicate image id {im['id']}")
        images[im["id"]] = im

    cats: Dict[int, dict] = {}
    for i, cat in enumerate(data["categories"]):
        where = f"categories[{i}]"
        if not isinstance(cat, dict):
            _fail(path, where, "must be an object")
        for key in ("id", "name", "supercategory"):
            if key not in cat:
                _fail(path, where, f"missing key {key!r} (each part category names the "
                                   "object class it belongs to as its supercategory)")
        if not _is_int(cat["id"]):
            _fail(path, where, f"'id' must be an int, got {cat['id']!r}")
        if not isinstance(cat["supercategory"], str) or not cat["supercategory"]:
            _fail(path, where, "'supercategory' must be a non-empty string")
        if cat["id"] in cats:
            _fail(path, where, f"duplicate category id {cat['id']}")
        cats[cat["id"]] = cat
    if not cats:
        raise ValueError(f"{path}: 'categories' is empty; a part dataset needs at least one "
                         "part category")

    per_image: Dict[int, List[dict]] = {i: [] for i in images}
    for i, ann in enumerate(data["annotations"]):
        where = f"annotations[{i}]" + (f" (id {ann.get('id')})" if isinstance(ann, dict)
                                        and "id" in ann else "")
        if not isinstance(ann, dict):
            _fail(path, where, "must be an object")
        for key in ("image_id", "category_id", "segmentation"):
            if key not in ann:
                _fail(path, where, f"missing key {key!r}")
        if ann["image_id"] not in images:
            _fail(path, where, f"refers to image_id {ann['image_id']!r}, which is not in "
                               "'images'")
        if ann["category_id"] not in cats:
            _fail(path, where, f"refers to category_id {ann['category_id']!r}, which is not "
                               "in 'categories'")
        im = images[ann["image_id"]]
        try:
            _check_segmentation(ann["segmentation"], im["height"], im["width"])
        except _Bad as exc:
            _fail(path, where, f"bad segmentation: {exc}")
        per_image[ann["image_id"]].append(ann)
    return {"images": images, "image_ids": list(images), "annotations": per_image,
            "categories": [cats[k] for k in sorted(cats)]}


# ----------------------------------------------------------------------------- dataset


def _find(root: pathlib.Path, candidates: Sequence[pathlib.Path], what: str) -> pathlib.Path:
    for c in candidates:
        if c.exists():
            return c
    tried = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"{what} not found under {root} (tried {tried})")


def _folder_of(file_name: str) -> str:
    """The class folder of an image: its parent directory, else the wnid prefix."""
    p = pathlib.PurePosixPath(file_name)
    if len(p.parts) > 1:
        return p.parts[-2]
    return p.name.split("_")[0]


class PartImageNetDataset(Dataset):
    """A PartImageNet-format split as (x, y, mask) samples (see the module docstring).

    root: the dataset folder; split: 'train' | 'val' | 'test' (any name with its
    annotation file); image_size: resize images (bilinear) and masks (nearest) to a
    square of this side (None keeps sizes, which must then agree to be batched);
    annotation_file / image_dir: override the default locations; packed: yield
    (x, pack_part_targets(y, mask)) for the Trainer.

    Attributes: class_names (supercategories), part_names (categories sorted by id;
    mask id k = part_names[k - 1]), num_parts K, labels (N,) int64, has_mask (N,) bool.
    """

    def __init__(self, root: PathLike, split: str = "train", *, image_size: Optional[int] = None,
                 annotation_file: Optional[PathLike] = None,
                 image_dir: Optional[PathLike] = None, packed: bool = False):
        root = pathlib.Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"PartImageNet root {root} does not exist")
        check_image_size(image_size)
        ann_path = pathlib.Path(annotation_file) if annotation_file is not None else _find(
            root, [root / "annotations" / f"{split}.json",
                   root / "annotations" / split / f"{split}.json"],
            f"the {split!r} annotation file")
        self.image_dir = pathlib.Path(image_dir) if image_dir is not None else _find(
            root, [root / "images" / split], f"the {split!r} image folder")
        ann = load_part_annotations(ann_path)
        self.annotation_file = ann_path
        self.image_size, self.packed = image_size, bool(packed)
        cats = ann["categories"]
        self.part_names = tuple(c["name"] for c in cats)
        self.num_parts = len(cats)
        self._part_id = {c["id"]: k + 1 for k, c in enumerate(cats)}
        classes: List[str] = []
        for c in cats:
            if c["supercategory"] not in classes:
                classes.append(c["supercategory"])
        self.class_names = tuple(classes)
        self._part_class = {c["id"]: classes.index(c["supercategory"]) for c in cats}

        self._entries, labels, has_mask = [], [], []
        folder_class: Dict[str, int] = {}
        unlabelled = []
        for image_id in ann["image_ids"]:
            im, anns = ann["images"][image_id], ann["annotations"][image_id]
            found = {self._part_class[a["category_id"]] for a in anns}
            if len(found) > 1:
                names = sorted(classes[c] for c in found)
                raise ValueError(f"{ann_path}: image id {image_id} ({im['file_name']}) has parts "
                                 f"of several classes {names}; each image shows one object "
                                 "class")
            label = found.pop() if found else -1
            folder = _folder_of(im["file_name"])
            if label >= 0:
                prev = folder_class.setdefault(folder, label)
                if prev != label:
                    raise ValueError(f"{ann_path}: folder {folder!r} holds images of classes "
                                     f"{classes[prev]!r} and {classes[label]!r} (image id "
                                     f"{image_id}); a folder (wnid) is one class")
            else:
                unlabelled.append(len(labels))
            self._entries.append((im, anns))
            labels.append(label)
            has_mask.append(bool(anns))
        for i in unlabelled:
            im = self._entries[i][0]
            folder = _folder_of(im["file_name"])
            if folder not in folder_class:
                raise ValueError(f"{ann_path}: image id {im['id']} ({im['file_name']}) has no "
                                 f"part annotation and no other image of its folder "
                                 f"{folder!r} has one, so its class is unknown")
            labels[i] = folder_class[folder]
        self.labels = torch.tensor(labels, dtype=torch.int64)
        self.has_mask = torch.tensor(has_mask, dtype=torch.bool)

    def class_part_matrix(self) -> Tensor:
        """(num_classes, K + 1) bool: [c, k] True when part k belongs to class c (the
        pixel-count head's fixed map; column 0, background, False)."""
        m = torch.zeros(len(self.class_names), self.num_parts + 1, dtype=torch.bool)
        for cid, k in self._part_id.items():
            m[self._part_class[cid], k] = True
        return m

    def image_path(self, index: int) -> pathlib.Path:
        """Where sample index's image lives (images/<split>/<file>, or .../<wnid>/<file>)."""
        name = self._entries[index][0]["file_name"]
        direct = self.image_dir / name
        if direct.exists():
            return direct
        nested = self.image_dir / _folder_of(name) / pathlib.PurePosixPath(name).name
        if nested.exists():
            return nested
        raise FileNotFoundError(f"image {name!r} (annotation file {self.annotation_file}) not "
                                f"found: tried {direct} and {nested}")

    def part_mask(self, index: int) -> Tensor:
        """(H, W) int64 mask of sample index at its annotated size (all -1 if it has none)."""
        im, anns = self._entries[index]
        h, w = im["height"], im["width"]
        if not anns:
            return torch.full((h, w), NO_MASK, dtype=torch.int64)
        mask = np.zeros((h, w), dtype=np.int64)
        for a in anns:
            mask[rasterize_segmentation(a["segmentation"], h, w)] = self._part_id[a["category_id"]]
        return torch.from_numpy(mask)

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, index: int):
        im = self._entries[index][0]
        path = self.image_path(index)
        x = read_image(path)
        if tuple(x.shape[1:]) != (im["height"], im["width"]):
            raise ValueError(f"{path} is {x.shape[1]} x {x.shape[2]} (H x W) but "
                             f"{self.annotation_file} says {im['height']} x {im['width']}")
        mask = self.part_mask(index)
        if self.image_size is not None:
            s = self.image_size
            x = torch.nn.functional.interpolate(x[None], size=(s, s), mode="bilinear",
                                                align_corners=False, antialias=True)[0]
            mask = torch.nn.functional.interpolate(mask[None, None].float(), size=(s, s),
                                                   mode="nearest")[0, 0].to(torch.int64)
        y = self.labels[index]
        if self.packed:
            return x, pack_part_targets(y, mask)
        return x, y, mask

    def __repr__(self) -> str:
        return (f"PartImageNetDataset(n={len(self)}, classes={len(self.class_names)}, "
                f"parts={self.num_parts}, image_size={self.image_size})")
