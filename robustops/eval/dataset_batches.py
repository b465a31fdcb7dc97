"""The batches an evaluation walks: from (x, y) tensors or any iterable of batches."""
from __future__ import annotations

from typing import Iterable, Iterator, Optional, Tuple, Union

from torch import Tensor

Data = Union[Iterable[Tuple[Tensor, Tensor]], Tuple[Tensor, Tensor]]


def iterate_batches(data: Data, batch_size: int, max_samples: Optional[int] = None
                    ) -> Iterator[Tuple[Tensor, Tensor]]:
    """(x, y) batches of `data`, cut so that at most `max_samples` samples come out.

    data: an (x (N, ...), y (N,)) tuple of tensors (split into `batch_size` chunks)
    or an iterable of (x, y) batches such as a DataLoader.
    """
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], Tensor):
        xs, ys = data
        if xs.shape[0] != ys.shape[0]:
            raise ValueError(f"x has {xs.shape[0]} samples but y has {ys.shape[0]}")
        data = ((xs[i:i + batch_size], ys[i:i + batch_size])
                for i in range(0, xs.shape[0], batch_size))
    n = 0
    for x, y in data:
        if max_samples is not None:
            if n >= max_samples:
                return
            x, y = x[:max_samples - n], y[:max_samples - n]
        n += x.shape[0]
        yield x, y
