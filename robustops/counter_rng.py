"""Counter-based random numbers keyed by (seed, stream, global sample index, element).

Each value is a pure function of its key, so a sample gets the same random
numbers whatever the batch split, the number of processes or the device: the
property distributed evaluation and resumable runs need. Plain integer tensor
ops, so it runs on any device and traces under torch.compile.

The mixer is MurmurHash3's 32-bit finaliser (fmix32) applied along the key.
"""
from __future__ import annotations

import torch

_MASK = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9


def _mul32(h: torch.Tensor, c: int) -> torch.Tensor:
    # (h * c) mod 2**32 from 16-bit halves so no int64 product overflows.
    lo = (h & 0xFFFF) * c
    hi = ((h >> 16) * c) & 0xFFFF
    return (lo + (hi << 16)) & _MASK


def fmix32(h: torch.Tensor) -> torch.Tensor:
    """MurmurHash3 finaliser on int64 tensors holding uint32 values."""
    h = h ^ (h >> 16)
    h = _mul32(h, 0x85EBCA6B)
    h = h ^ (h >> 13)
    h = _mul32(h, 0xC2B2AE35)
    return h ^ (h >> 16)


def _key32(value: int) -> int:
    """Fold a Python int (any size, e.g. a 64-bit seed) to 32 bits."""
    value &= (1 << 64) - 1
    return (value ^ (value >> 32)) & _MASK


def sample_index(batch: int, index, device: torch.device) -> torch.Tensor:
    """Global sample indices (B,) int64: `index` is None (0..B-1), an int offset, or a (B,) tensor."""
    if index is None:
        index = 0
    if isinstance(index, int):
        if index < 0:
            raise ValueError(f"index offset must be >= 0, got {index}")
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

    seed: any Python int; stream: small int that separates independent draws
    (e.g. Box-Muller's two uniforms); index: (B,) int64 global sample indices;
    element j of row b depends only on (seed, stream, index[b], j).
    """
    device = index.device
    base = fmix32(torch.tensor(_key32(seed) ^ _mul32_int(stream + 1, _GOLDEN), device=device,
                               dtype=torch.int64))
    idx_lo = index & _MASK
    idx_hi = (index >> 32) & _MASK
    row = fmix32(base ^ fmix32(idx_hi ^ 0x68E31DA4))
    row = fmix32(row ^ idx_lo)                                   # (B,)
    col = torch.arange(numel, device=device, dtype=torch.int64)
    col = fmix32(_mul32(col & _MASK, _GOLDEN) ^ 0x1B873593)      # (numel,)
    h = fmix32(row[:, None] ^ col[None, :])
    h = fmix32(h ^ (row[:, None] >> 7))
    # 24 random bits, centred in their bucket: never exactly 0 or 1.
    return ((h >> 8).to(torch.float64) + 0.5).mul_(2.0 ** -24).to(dtype)


def counter_normal(seed: int, stream: int, index: torch.Tensor, numel: int,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal numbers, shape (B, numel), by Box-Muller on two counter streams."""
    u1 = counter_uniform(seed, 2 * stream, index, numel, torch.float64)
    u2 = counter_uniform(seed, 2 * stream + 1, index, numel, torch.float64)
    z = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * torch.pi * u2)
    return z.to(dtype)


def _mul32_int(a: int, c: int) -> int:
    return (a * c) & _MASK
