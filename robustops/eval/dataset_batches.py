"""The batches an evaluation walks: from (x, y) tensors, a map-style dataset, or any
iterable of batches; optionally only one process's share of them (sharded evaluation).
Samples and batches may be tuples or dicts (robustops.data.batches reads them).

Sharding is by batch: the batches are cut exactly as in one process (`batch_size`
chunks of the first `max_samples` samples) and batch b goes to rank b % world. Every
batch carries the global index of its first sample, which keys the per-sample
random draws of the attacks, so a sample is attacked identically whatever the
number of processes, and the same batch composition keeps the arithmetic bitwise equal.
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator, Optional, Tuple, Union

from torch import Tensor
from torch.utils.data import Dataset

from ..arguments import positive_int
from ..data.batches import batch_images_labels, check_data, num_samples, take

Data = Union[Iterable[Any], Tuple[Tensor, Tensor], Dataset]


def shard_batches(data: Data, batch_size: int, max_samples: Optional[int] = None, *,
                  rank: int = 0, world: int = 1, image_key: Optional[str] = None,
                  label_key: Optional[str] = None) -> Iterator[Tuple[int, Tensor, Tensor]]:
    """(offset, x, y) for the batches of `data` that process `rank` of `world` evaluates.

    offset is the global index of the batch's first sample. With world=1 these are all
    the batches. Sliceable data (tensors, map-style datasets) only materialises this
    rank's batches; other iterables are walked whole and the other ranks' batches skipped.
    Dict samples or batches are read at image_key / label_key (None: the usual names,
    see robustops.data.batches).
    """
    batch_size = positive_int(batch_size, "batch_size")
    if not 0 <= rank < world:
        raise ValueError(f"need 0 <= rank < world, got rank {rank} of {world}")
    check_data(data)
    n = num_samples(data)
    if n is not None:
        if max_samples is not None:
            n = min(n, max_samples)
        for b, lo in enumerate(range(0, n, batch_size)):
            if b % world == rank:
                x, y = take(data, lo, min(lo + batch_size, n), image_key, label_key)
                yield lo, x, y
        return
    offset = 0
    for b, batch in enumerate(data):
        x, y = batch_images_labels(batch, image_key, label_key, f"batch {b}")
        if max_samples is not None:
            if offset >= max_samples:
                return
            x, y = x[:max_samples - offset], y[:max_samples - offset]
        if b % world == rank:
            yield offset, x, y
        offset += x.shape[0]


def iterate_batches(data: Data, batch_size: int, max_samples: Optional[int] = None, *,
                    image_key: Optional[str] = None, label_key: Optional[str] = None
                    ) -> Iterator[Tuple[Tensor, Tensor]]:
    """(x, y) batches of `data`, cut so that at most `max_samples` samples come out.

    data: an (x (N, ...), y (N,)) tuple of tensors or a map-style dataset (split into
    `batch_size` chunks), or an iterable of (x, y) batches such as a DataLoader; samples
    and batches may be dicts, read at image_key / label_key.
    """
    for _, x, y in shard_batches(data, batch_size, max_samples, image_key=image_key,
                                 label_key=label_key):
        yield x, y
