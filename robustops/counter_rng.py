"""Counter-based random numbers keyed by (seed, stream, global sample index, element).

Each value is a pure function of its key, so a sample gets the same random
numbers whatever the batch split, the number of processes or the device: the
property distributed evaluation and resumable runs need. A custom op with a
fake kernel: it runs on CPU, CUDA and Triton, and traces under torch.compile.

The mixer is MurmurHash3's 32-bit finaliser (fmix32) applied along the key; the
numbers come from the fused op robustops::counter_rng (robustops/ops/counter_rng.py).
"""
from __future__ import annotations

from numbers import Integral

import torch

from .arguments import require_int
from .ops.counter_rng import counter_rng


def sample_index(batch: int, index, device: torch.device) -> torch.Tensor:
    """Global sample indices (B,) int64: `index` is None (0..B-1), an int offset, or a (B,) tensor."""
    if index is None:
        index = 0
    if isinstance(index, Integral):  # a bool too: require_int refuses it
        index = require_int(index, "index offset", minimum=0)
        return torch.arange(index, index + batch, device=device, dtype=torch.int64)
    if not isinstance(index, torch.Tensor):
        raise TypeError(f"index must be None, an int offset or a (B,) int64 tensor, got {type(index).__name__}")
    if index.dtype not in (torch.int32, torch.int64) or tuple(index.shape) != (batch,):
        raise ValueError(f"index must be an integer tensor of shape ({batch},), got "
                         f"{tuple(index.shape)} {index.dtype}")
    return index.to(device=device, dtype=torch.int64)


def counter_uniform(seed: int, stream: int, index: torch.Tensor, numel: int,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Uniform numbers in the open interval (0, 1), shape (B, numel).

    seed: any Python int; stream: small int that separates independent draws;
    index: (B,) int64 global sample indices; element j of row b depends only on
    (seed, stream, index[b], j). Runs the fused robustops::counter_rng op.
    """
    return counter_rng(index, numel, seed, stream, normal=False, dtype=dtype)


def counter_normal(seed: int, stream: int, index: torch.Tensor, numel: int,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal numbers, shape (B, numel), by Box-Muller on streams 2*stream, 2*stream+1."""
    return counter_rng(index, numel, seed, stream, normal=True, dtype=dtype)
