"""The batches an evaluation walks: from (x, y) tensors, a map-style dataset, or any
iterable of batches; optionally only one process's share of them (sharded evaluation).

Sharding is by batch: the batches are cut exactly as in one process (`batch_size`
chunks of the first `max_samples` samples) and batch b goes to rank b % world. Every
batch carries the global index of its first sample, which keys the per-sample
random draws of the attacks, so a sample is attacked identically whatever the
number of processes, and the same batch composition keeps the arithmetic bitwise equal.
"""
from __future__ import annotations

from typing import Iterable, Iterator, Optional, Tuple, Union

import torch
from torch import Tensor
from torch.utils.data import Dataset, IterableDataset, TensorDataset

Data = Union[Iterable[Tuple[Tensor, Tensor]], Tuple[Tensor, Tensor], Dataset]


def _num_samples(data) -> Optional[int]:
    """N for data that can be sliced (an (x, y) tuple or a map-style dataset); else None."""
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], Tensor):
        xs, ys = data
        if xs.shape[0] != ys.shape[0]:
            raise ValueError(f"x has {xs.shape[0]} samples but y has {ys.shape[0]}")
        return xs.shape[0]
    if isinstance(data, Dataset) and not isinstance(data, IterableDataset) and hasattr(data, "__len__"):
        return len(data)
    return None


def take(data, lo: int, hi: int) -> Tuple[Tensor, Tensor]:
    """Samples lo..hi-1 of an (x, y) tuple or a map-style dataset as one (x, y) batch."""
    if isinstance(data, tuple):
        return data[0][lo:hi], data[1][lo:hi]
    if isinstance(data, TensorDataset) and len(data.tensors) >= 2:
        return data.tensors[0][lo:hi], data.tensors[1][lo:hi]
    items = [_image_and_label(data[i], f"sample {i}") for i in range(lo, hi)]
    return torch.stack([x for x, _ in items]), torch.as_tensor([int(y) for _, y in items])


def _image_and_label(item, what: str):
    """(x, y) of a sample or batch that is (x, y) or (x, y, more...), e.g. with part masks."""
    if not isinstance(item, (tuple, list)) or len(item) < 2:
        raise ValueError(f"{what} of the data is {type(item).__name__}, not an (x, y) or "
                         f"(x, y, ...) tuple: evaluation needs images and labels")
    return item[0], item[1]


def shard_batches(data: Data, batch_size: int, max_samples: Optional[int] = None, *,
                  rank: int = 0, world: int = 1) -> Iterator[Tuple[int, Tensor, Tensor]]:
    """(offset, x, y) for the batches of `data` that process `rank` of `world` evaluates.

    offset is the global index of the batch's first sample. With world=1 these are all
    the batches. Sliceable data (tensors, map-style datasets) only materialises this
    rank's batches; other iterables are walked whole and the other ranks' batches skipped.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if not 0 <= rank < world:
        raise ValueError(f"need 0 <= rank < world, got rank {rank} of {world}")
    n = _num_samples(data)
    if n is not None:
        if max_samples is not None:
            n = min(n, max_samples)
        for b, lo in enumerate(range(0, n, batch_size)):
            if b % world == rank:
                x, y = take(data, lo, min(lo + batch_size, n))
                yield lo, x, y
        return
    offset = 0
    for b, batch in enumerate(data):
        x, y = _image_and_label(batch, f"batch {b}")
        if max_samples is not None:
            if offset >= max_samples:
                return
            x, y = x[:max_samples - offset], y[:max_samples - offset]
        if b % world == rank:
            yield offset, x, y
        offset += x.shape[0]


def iterate_batches(data: Data, batch_size: int, max_samples: Optional[int] = None
                    ) -> Iterator[Tuple[Tensor, Tensor]]:
    """(x, y) batches of `data`, cut so that at most `max_samples` samples come out.

    data: an (x (N, ...), y (N,)) tuple of tensors or a map-style dataset (split into
    `batch_size` chunks), or an iterable of (x, y) batches such as a DataLoader.
    """
    for _, x, y in shard_batches(data, batch_size, max_samples):
        yield x, y
