"""(images, labels) from whatever a user's data yields: tuples or dicts, datasets or loaders.

One adapter shared by the evaluators and (for its samples) the Trainer, so that every
entry point accepts the same data forms:

- an ``(x (N, ...), y (N,))`` tuple of tensors;
- a map-style ``Dataset`` whose samples are ``(x, y)``, ``(x, y, more...)`` (e.g. part
  masks) or dicts (``{"image": x, "label": y}``, Hugging Face style);
- any iterable of batches in the same forms: a ``DataLoader``, an ``IterableDataset``,
  a generator.

Dict samples and batches are read at ``image_key`` / ``label_key``; left at None, the
first present of ``IMAGE_KEYS`` / ``LABEL_KEYS`` is used. A dict without the key is
refused with the keys it does have, so a typo is one look away.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Iterable, Iterator, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

__all__ = ["IMAGE_KEYS", "LABEL_KEYS", "image_and_label", "num_samples", "take",
           "image_label_view", "sample_dataset", "check_data", "batch_images_labels"]

# Tried in order when no key is named: torchvision/HF "image"/"label", HF processors'
# "pixel_values"/"labels", and the short names of hand-written datasets.
IMAGE_KEYS = ("image", "images", "img", "pixel_values", "input", "inputs", "x")
LABEL_KEYS = ("label", "labels", "target", "targets", "y")

Data = Union[Iterable[Any], Tuple[Tensor, Tensor], Dataset]


def _check_key(name: str, key) -> None:
    if key is not None and not isinstance(key, str):
        raise TypeError(f"{name} must be a str or None, got {type(key).__name__}")


def _pick(item: Mapping, key: Optional[str], defaults: Sequence[str], name: str, what: str):
    if key is not None:
        if key in item:
            return item[key]
        raise ValueError(f"{what} is a dict without {name} {key!r}; its keys are "
                         f"{_keys(item)}: pass {name}= (--{name.replace('_', '-')} on the "
                         "command line) naming one of them")
    for k in defaults:
        if k in item:
            return item[k]
    raise ValueError(f"{what} is a dict with none of the usual {name.split('_')[0]} keys "
                     f"({', '.join(defaults)}); its keys are {_keys(item)}: pass {name}= "
                     f"(--{name.replace('_', '-')} on the command line) naming one of them")


def _keys(item: Mapping) -> str:
    names = [repr(k) for k in list(item.keys())[:12]]
    return ", ".join(names) + (" ..." if len(item) > 12 else "")


def image_and_label(item: Any, image_key: Optional[str] = None, label_key: Optional[str] = None,
                    what: str = "a sample") -> Tuple[Any, Any]:
    """(x, y) of one sample or batch: an (x, y) / (x, y, ...) tuple or list, or a dict.

    what: how errors name the item ("batch 3", "sample 17").
    """
    _check_key("image_key", image_key)
    _check_key("label_key", label_key)
    if isinstance(item, Mapping):
        return (_pick(item, image_key, IMAGE_KEYS, "image_key", what),
                _pick(item, label_key, LABEL_KEYS, "label_key", what))
    if isinstance(item, (tuple, list)) and len(item) >= 2:
        return item[0], item[1]
    got = type(item).__name__ + (f" of length {len(item)}" if isinstance(item, (tuple, list)) else "")
    raise ValueError(f"{what} of the data is {got}, not an (x, y) or (x, y, ...) tuple or a "
                     "dict of image and label: evaluation and training need images and labels")


def _as_images(x: Any, what: str) -> Tensor:
    if isinstance(x, Tensor):
        return x
    raise TypeError(f"the images of {what} are a {type(x).__name__}, not a tensor: convert "
                    "them in the dataset (e.g. torchvision.transforms.ToTensor(), or "
                    "set_format('torch') for a Hugging Face dataset)")


def _as_labels(y: Any, what: str) -> Tensor:
    try:
        return torch.as_tensor(y)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"the labels of {what} are a {type(y).__name__}, not integers or a "
                        "tensor of them") from None


def num_samples(data: Data) -> Optional[int]:
    """N for data that can be sliced (an (x, y) tuple or a map-style dataset); else None."""
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], Tensor):
        xs, ys = data
        if not isinstance(ys, Tensor):
            raise TypeError(f"an (x, y) tuple needs y as a tensor, got {type(ys).__name__}")
        if xs.shape[0] != ys.shape[0]:
            raise ValueError(f"x has {xs.shape[0]} samples but y has {ys.shape[0]}")
        return xs.shape[0]
    if isinstance(data, Dataset) and not isinstance(data, IterableDataset) and hasattr(data, "__len__"):
        return len(data)
    return None


def take(data: Data, lo: int, hi: int, image_key: Optional[str] = None,
         label_key: Optional[str] = None) -> Tuple[Tensor, Tensor]:
    """Samples lo..hi-1 of an (x, y) tuple or a map-style dataset as one (x, y) batch."""
    if isinstance(data, tuple):
        return data[0][lo:hi], data[1][lo:hi]
    if isinstance(data, TensorDataset) and len(data.tensors) >= 2:
        return data.tensors[0][lo:hi], data.tensors[1][lo:hi]
    xs, ys = [], []
    for i in range(lo, hi):
        what = f"sample {i}"
        x, y = image_and_label(data[i], image_key, label_key, what)
        xs.append(_as_images(x, what))
        ys.append(int(y))
    return torch.stack(xs), torch.as_tensor(ys)


def batch_images_labels(batch: Any, image_key: Optional[str] = None,
                        label_key: Optional[str] = None, what: str = "a batch"
                        ) -> Tuple[Tensor, Tensor]:
    """(x (B, ...), y (B,)) tensors of one batch (tuple or dict); labels as a tensor."""
    x, y = image_and_label(batch, image_key, label_key, what)
    x, y = _as_images(x, what), _as_labels(y, what)
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"{what}: {x.shape[0] if x.ndim else 0} images but labels of shape "
                         f"{tuple(y.shape)}; labels must be (B,) class indices")
    return x, y


class _MapView(Dataset):
    """A map-style dataset's samples as (x, y)."""

    def __init__(self, data: Dataset, image_key: Optional[str], label_key: Optional[str]):
        self.data, self.image_key, self.label_key = data, image_key, label_key

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i):
        return image_and_label(self.data[i], self.image_key, self.label_key, f"sample {i}")


class _IterableView:
    """An iterable of batches (a DataLoader, a generator) as (x, y) batches."""

    def __init__(self, data: Iterable, image_key: Optional[str], label_key: Optional[str]):
        self.data, self.image_key, self.label_key = data, image_key, label_key

    def __iter__(self) -> Iterator[Tuple[Tensor, Tensor]]:
        for b, batch in enumerate(self.data):
            yield batch_images_labels(batch, self.image_key, self.label_key, f"batch {b}")


def check_data(data: Any) -> None:
    """TypeError unless data is an (x, y) tuple, a Dataset or an iterable of batches."""
    if isinstance(data, (Tensor, str, bytes, Mapping)) or not (
            isinstance(data, (tuple, Dataset)) or hasattr(data, "__iter__")):
        hint = (" (pass (x, y), a pair of tensors)" if isinstance(data, Tensor) else
                " (a dict is one batch: pass a list of them, or a Dataset)"
                if isinstance(data, Mapping) else "")
        raise TypeError(f"data must be an (x, y) tuple of tensors, a Dataset, a DataLoader or "
                        f"another iterable of batches, got {type(data).__name__}{hint}")


def image_label_view(data: Data, image_key: Optional[str] = None,
                     label_key: Optional[str] = None) -> Data:
    """`data` seen as (x, y): tensors as they are; a map-style dataset as a dataset of
    (x, y) samples; any other iterable as an iterable of (x (B, ...), y (B,)) batches.

    Any evaluator taking data accepts the result, e.g.
    ``robust_accuracy(model, image_label_view(loader, image_key="img"), attacks)``.
    """
    _check_key("image_key", image_key)
    _check_key("label_key", label_key)
    check_data(data)
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], Tensor):
        num_samples(data)  # checks the pair
        return data
    if num_samples(data) is not None:
        return _MapView(data, image_key, label_key)
    return _IterableView(data, image_key, label_key)


def sample_dataset(data: Data, image_key: Optional[str] = None,
                   label_key: Optional[str] = None) -> Dataset:
    """A map-style dataset of (x, y, ...) samples for training, from tensors, a Dataset or
    a DataLoader (its dataset: the trainer draws its own shuffled, sharded and resumable
    batches, so the loader's batching is not used). Dict samples become (x, y); tuple
    samples are left as they are (with any extra fields, e.g. part masks).

    An IterableDataset or other plain iterable is refused: resuming mid-epoch and sharding
    over processes need samples that can be indexed.
    """
    _check_key("image_key", image_key)
    _check_key("label_key", label_key)
    check_data(data)
    if isinstance(data, DataLoader):
        data = data.dataset
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], Tensor):
        num_samples(data)
        return TensorDataset(*data)
    if num_samples(data) is None:
        raise TypeError(f"training needs a map-style dataset (indexable, with a length) so that "
                        f"it can shuffle, shard and resume; got {type(data).__name__}: wrap the "
                        "samples in a Dataset or pass (x, y) tensors")
    if len(data) == 0 or not isinstance(data[0], Mapping):
        return data  # tuple samples as they are: (x, y, masks...) keep their extra fields
    return _MapView(data, image_key, label_key)
