"""Triton kernel of counter_rng: the hash of kernels/counter_rng.h in uint32 arithmetic."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 1024


@triton.jit
def _fmix32(h):
    h ^= h >> 16
    h *= 0x85EBCA6B
    h ^= h >> 13
    h *= 0xC2B2AE35
    h ^= h >> 16
    return h


@triton.jit
def _row(base, index):
    lo = (index & 0xFFFFFFFF).to(tl.uint32)
    hi = ((index >> 32) & 0xFFFFFFFF).to(tl.uint32)
    return _fmix32(_fmix32(base ^ _fmix32(hi ^ 0x68E31DA4)) ^ lo)


@triton.jit
def _uniform(row, j):
    col = _fmix32((j.to(tl.uint32) * 0x9E3779B9) ^ 0x1B873593)
    h = _fmix32(_fmix32(row ^ col) ^ (row >> 7))
    return ((h >> 9).to(tl.float64) + 0.5) * (1.0 / 8388608.0)


@triton.jit
def _counter_rng_kernel(out_ptr, index_ptr, total, n, base1, base2, NORMAL: tl.constexpr,
                        BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < total
    r = offs // n
    j = offs - r * n
    idx = tl.load(index_ptr + r, mask=mask, other=0)
    u1 = _uniform(_row(base1.to(tl.uint32), idx), j)
    if NORMAL:
        u2 = _uniform(_row(base2.to(tl.uint32), idx), j)
        v = tl.sqrt(-2.0 * tl.log(u1)) * tl.cos(6.283185307179586 * u2)
    else:
        v = u1
    tl.store(out_ptr + offs, v.to(out_ptr.dtype.element_ty), mask=mask)


def counter_rng_triton(out: torch.Tensor, index: torch.Tensor, base1: int, base2: int,
                       normal: bool) -> None:
    """Fill out (B, N) contiguous with the counter-based numbers of `index` (B,) int64."""
    total = out.numel()
    if total == 0:
        return
    n = total // out.shape[0]
    _counter_rng_kernel[(triton.cdiv(total, BLOCK),)](out, index, total, n, base1, base2,
                                                     NORMAL=normal, BLOCK=BLOCK)
