"""Triton kernels of v1_response: the math of kernels/v1_response.h, restated in Triton.

Launcher contract as for the C++ kernels (see csrc/v1_response.h): q0 (B, C0, H, W),
q1 (B, Cc, H, W), out/grad_out/grad_q0 like q0 and grad_q1 like q1, all contiguous
NCHW or all channels_last (CHANNELS_LAST); index (B,) int64 contiguous (noise only).
One program per BLOCK elements of q0 in memory order; each element finds its
(sample, channel, pixel) and its logical noise offset c*H*W + h*W + w. Computes in
float32 (float64 for float64 tensors); the normals are float64 Box-Muller on the
hash of robustops/triton/counter_rng.py, rounded to the compute type.
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from .counter_rng import _row, _uniform

# One pinned config: autotuning needs a GPU, and the interpreter runs ~1 ms per program.
BLOCK = 1024
NUM_WARPS = 4
INV_SQRT2 = tl.constexpr(0.70710678118654752440)
NOISE_EPS = tl.constexpr(1e-4)


@triton.jit
def _locate(offs, c0, cc, hw, S, CHANNELS_LAST: tl.constexpr):
    """(sample, channel, pixel, q1 offset) of q0's memory offsets `offs`."""
    per = c0 * hw
    b = offs // per
    rem = offs - b * per
    if CHANNELS_LAST:
        p = rem // c0
        c = rem - p * c0
        off1 = (b * hw + p) * cc + (c - S)
    else:
        c = rem // hw
        p = rem - c * hw
        off1 = (b * cc + (c - S)) * hw + p
    return b, c, p, off1


@triton.jit
def _normal(index_ptr, b, j, mask, base1, base2):
    idx = tl.load(index_ptr + b, mask=mask, other=0)
    u1 = _uniform(_row(base1.to(tl.uint32), idx), j)
    u2 = _uniform(_row(base2.to(tl.uint32), idx), j)
    return tl.sqrt(-2.0 * tl.log(u1)) * tl.cos(6.283185307179586 * u2)


@triton.jit
def _cells(a, bq, cplx, k):
    """x: k relu(a) for simple cells, k sqrt(a^2 + b^2) / sqrt(2) for complex ones."""
    return tl.where(cplx, k * tl.sqrt(a * a + bq * bq) * INV_SQRT2, k * tl.maximum(a, 0.0))


@triton.jit
def _v1_fwd_kernel(out_ptr, q0_ptr, q1_ptr, index_ptr, par_ptr, total, c0, cc, hw, S, base1,
                   base2, NOISE: tl.constexpr, CHANNELS_LAST: tl.constexpr,
                   FP64: tl.constexpr, BLOCK: tl.constexpr):
    ct = tl.float64 if FP64 else tl.float32
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < total
    b, c, p, off1 = _locate(offs, c0, cc, hw, S, CHANNELS_LAST)
    cplx = c >= S
    k = tl.load(par_ptr).to(ct)
    a = tl.load(q0_ptr + offs, mask=mask, other=0).to(ct)
    bq = tl.load(q1_ptr + off1, mask=mask & cplx, other=0).to(ct)
    x = _cells(a, bq, cplx, k)
    if NOISE:
        s = tl.load(par_ptr + 1).to(ct)
        lv = tl.load(par_ptr + 2).to(ct)
        n = _normal(index_ptr, b, c * hw + p, mask, base1, base2).to(ct)
        r0 = s * x + lv
        r = r0 + n * tl.sqrt(tl.maximum(r0, 0.0) + NOISE_EPS)
        x = tl.maximum((r - lv) / s, 0.0)
    tl.store(out_ptr + offs, x.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _v1_bwd_kernel(gq0_ptr, gq1_ptr, go_ptr, q0_ptr, q1_ptr, index_ptr, par_ptr, total, c0, cc,
                   hw, S, base1, base2, NOISE: tl.constexpr, CHANNELS_LAST: tl.constexpr,
                   FP64: tl.constexpr, BLOCK: tl.constexpr):
    ct = tl.float64 if FP64 else tl.float32
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < total
    b, c, p, off1 = _locate(offs, c0, cc, hw, S, CHANNELS_LAST)
    cplx = c >= S
    k = tl.load(par_ptr).to(ct)
    a = tl.load(q0_ptr + offs, mask=mask, other=0).to(ct)
    bq = tl.load(q1_ptr + off1, mask=mask & cplx, other=0).to(ct)
    g = tl.load(go_ptr + offs, mask=mask, other=0).to(ct)
    if NOISE:
        s = tl.load(par_ptr + 1).to(ct)
        lv = tl.load(par_ptr + 2).to(ct)
        n = _normal(index_ptr, b, c * hw + p, mask, base1, base2).to(ct)
        x = _cells(a, bq, cplx, k)
        r0 = s * x + lv
        root = tl.sqrt(tl.maximum(r0, 0.0) + NOISE_EPS)
        r = r0 + n * root
        active = ((r - lv) / s > 0).to(ct)
        droot = (r0 > 0).to(ct) * 0.5 / root
        g = g * (active * (1.0 + n * droot))
    e = tl.sqrt(a * a + bq * bq)
    inv = tl.where(e > 0, 1.0 / tl.where(e > 0, e, 1.0), 0.0)
    f = g * k * INV_SQRT2 * inv
    ga = tl.where(cplx, f * a, g * k * (a > 0).to(ct))
    tl.store(gq0_ptr + offs, ga.to(gq0_ptr.dtype.element_ty), mask=mask)
    tl.store(gq1_ptr + off1, (f * bq).to(gq1_ptr.dtype.element_ty), mask=mask & cplx)


def _params(q0: torch.Tensor, k_exc: float, noise_scale: float, noise_level: float):
    # Triton passes Python floats as float32: float64 tensors need their scalars
    # at full precision, so all scalars go through memory in the compute type.
    ct = torch.float64 if q0.dtype == torch.float64 else torch.float32
    return torch.tensor([k_exc, noise_scale, noise_level], dtype=ct, device=q0.device)


def v1_response_triton(out: torch.Tensor, q0: torch.Tensor, q1: torch.Tensor,
                       index: Optional[torch.Tensor], simple: int, k_exc: float,
                       noise_scale: float, noise_level: float, noise: bool, base1: int,
                       base2: int, channels_last: bool) -> None:
    """Launch the forward kernel writing into `out` (B, C0, H, W), q0's layout."""
    total = q0.numel()
    if total == 0:
        return
    _, c0, h, w = q0.shape
    q1p = q1 if q1.numel() else q0  # unused pointer when there are no complex cells
    idx = index if index is not None else q0  # unused pointer when noise is off
    _v1_fwd_kernel[(triton.cdiv(total, BLOCK),)](
        out, q0, q1p, idx, _params(q0, k_exc, noise_scale, noise_level), total, c0,
        c0 - simple, h * w, simple, base1, base2, NOISE=noise, CHANNELS_LAST=channels_last,
        FP64=q0.dtype == torch.float64, BLOCK=BLOCK, num_warps=NUM_WARPS)


def v1_response_backward_triton(grad_q0: torch.Tensor, grad_q1: torch.Tensor,
                                grad_out: torch.Tensor, q0: torch.Tensor, q1: torch.Tensor,
                                index: Optional[torch.Tensor], simple: int, k_exc: float,
                                noise_scale: float, noise_level: float, noise: bool, base1: int,
                                base2: int, channels_last: bool) -> None:
    """Launch the backward kernel writing grad_q0 (like q0) and grad_q1 (like q1)."""
    total = q0.numel()
    if total == 0:
        return
    _, c0, h, w = q0.shape
    q1p = q1 if q1.numel() else q0
    gq1p = grad_q1 if grad_q1.numel() else grad_q0  # never stored to when there are no complex cells
    idx = index if index is not None else q0
    _v1_bwd_kernel[(triton.cdiv(total, BLOCK),)](
        grad_q0, gq1p, grad_out, q0, q1p, idx, _params(q0, k_exc, noise_scale, noise_level),
        total, c0, c0 - simple, h * w, simple, base1, base2, NOISE=noise,
        CHANNELS_LAST=channels_last, FP64=q0.dtype == torch.float64, BLOCK=BLOCK,
        num_warps=NUM_WARPS)
