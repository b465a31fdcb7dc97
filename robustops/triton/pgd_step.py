"""Triton kernels of pgd_step: the math of kernels/pgd_step.h, restated in Triton.

Launcher contract as for the C++ kernels (see csrc/pgd_step.h): out, x, x_nat,
grad dense with one contiguous block per sample, same strides; eps_t/alpha_t
None or (B,) float32/float64 contiguous. Computes in float32 (float64 for
float64 images).
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

# One pinned config: autotuning needs a GPU, and the interpreter runs ~1 ms per
# program instance, so tests use few, large blocks.
BLOCK = 1024
NUM_WARPS = 4


@triton.jit
def _sign(g):
    # sign(NaN) = 0, as in kernels/pgd_step.h: comparisons with NaN are false.
    return (g > 0).to(g.dtype) - (g < 0).to(g.dtype)


@triton.jit
def _finite_or_zero(g):
    return tl.where(g - g == 0, g, 0.0)


@triton.jit
def _load_row(x_ptr, xn_ptr, g_ptr, base, offs, m, ct: tl.constexpr):
    """x, x_nat and the finite part of grad at base + offs, in the compute type."""
    x = tl.load(x_ptr + base + offs, mask=m, other=0).to(ct)
    xn = tl.load(xn_ptr + base + offs, mask=m, other=0).to(ct)
    g = _finite_or_zero(tl.load(g_ptr + base + offs, mask=m, other=0).to(ct))
    return x, xn, g


@triton.jit
def _pgd_linf_kernel(out_ptr, x_ptr, xn_ptr, g_ptr, eps_ptr, alpha_ptr, box_ptr, n, d, eps,
                     alpha, HAS_EPS_T: tl.constexpr, HAS_ALPHA_T: tl.constexpr,
                     FP64: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    ct = tl.float64 if FP64 else tl.float32
    lo = tl.load(box_ptr).to(ct)
    hi = tl.load(box_ptr + 1).to(ct)
    x = tl.load(x_ptr + offs, mask=mask, other=0).to(ct)
    xn = tl.load(xn_ptr + offs, mask=mask, other=0).to(ct)
    g = tl.load(g_ptr + offs, mask=mask, other=0).to(ct)
    b = offs // d
    if HAS_EPS_T:
        e = tl.load(eps_ptr + b, mask=mask, other=0).to(ct)
    else:
        e = eps
    if HAS_ALPHA_T:
        a = tl.load(alpha_ptr + b, mask=mask, other=0).to(ct)
    else:
        a = alpha
    v = x + a * _sign(g)
    v = tl.minimum(tl.maximum(v, xn - e), xn + e)
    v = tl.minimum(tl.maximum(v, lo), hi)
    tl.store(out_ptr + offs, v.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _pgd_l2_kernel(out_ptr, x_ptr, xn_ptr, g_ptr, eps_ptr, alpha_ptr, box_ptr, d, eps, alpha,
                   HAS_EPS_T: tl.constexpr, HAS_ALPHA_T: tl.constexpr, FP64: tl.constexpr,
                   BLOCK: tl.constexpr):
    # One program per sample: ||g||, then ||delta||, then the write.
    b = tl.program_id(0).to(tl.int64)
    base = b * d
    ct = tl.float64 if FP64 else tl.float32
    lo = tl.load(box_ptr).to(ct)
    hi = tl.load(box_ptr + 1).to(ct)
    if HAS_EPS_T:
        e = tl.load(eps_ptr + b).to(ct)
    else:
        e = eps
    if HAS_ALPHA_T:
        a = tl.load(alpha_ptr + b).to(ct)
    else:
        a = alpha
    acc = tl.zeros([BLOCK], dtype=ct)
    for start in range(0, d, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        m = offs < d
        g = _finite_or_zero(tl.load(g_ptr + base + offs, mask=m, other=0).to(ct))
        acc += g * g
    g_sq = tl.sum(acc, axis=0)
    scale = tl.where(g_sq > 0, a / tl.sqrt(tl.where(g_sq > 0, g_sq, 1.0)), 0.0)
    acc = tl.zeros([BLOCK], dtype=ct)
    for start in range(0, d, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        m = offs < d
        x, xn, g = _load_row(x_ptr, xn_ptr, g_ptr, base, offs, m, ct)
        dl = x + scale * g - xn
        acc += dl * dl
    d_norm = tl.sqrt(tl.sum(acc, axis=0))
    shrink = tl.where(d_norm > e, e / tl.where(d_norm > 0, d_norm, 1.0), 1.0)
    for start in range(0, d, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        m = offs < d
        x, xn, g = _load_row(x_ptr, xn_ptr, g_ptr, base, offs, m, ct)
        v = xn + shrink * (x + scale * g - xn)
        v = tl.minimum(tl.maximum(v, lo), hi)
        tl.store(out_ptr + base + offs, v.to(out_ptr.dtype.element_ty), mask=m)


def pgd_step_triton(out: torch.Tensor, x: torch.Tensor, x_nat: torch.Tensor, grad: torch.Tensor,
                    eps: float, alpha: float, eps_t: Optional[torch.Tensor],
                    alpha_t: Optional[torch.Tensor], lo: float, hi: float, l2: bool) -> None:
    """Launch the pgd_step kernel writing into `out` (may alias x)."""
    n = x.numel()
    batch = x.shape[0]
    d = n // batch
    fp64 = x.dtype == torch.float64
    ct = torch.float64 if fp64 else torch.float32
    # Triton passes Python floats as float32; float64 images need their
    # scalars at full precision, so those go through memory.
    box = torch.tensor([lo, hi], dtype=ct, device=x.device)
    if fp64:
        eps_t = eps_t if eps_t is not None else torch.full((batch,), eps, dtype=ct, device=x.device)
        alpha_t = alpha_t if alpha_t is not None else torch.full((batch,), alpha, dtype=ct,
                                                                 device=x.device)
    common = dict(HAS_EPS_T=eps_t is not None, HAS_ALPHA_T=alpha_t is not None, FP64=fp64,
                  BLOCK=BLOCK, num_warps=NUM_WARPS)
    ep = eps_t if eps_t is not None else x  # unused pointer when HAS_EPS_T is False
    ap = alpha_t if alpha_t is not None else x
    if l2:
        _pgd_l2_kernel[(batch,)](out, x, x_nat, grad, ep, ap, box, d, float(eps), float(alpha),
                                 **common)
    else:
        _pgd_linf_kernel[(triton.cdiv(n, BLOCK),)](out, x, x_nat, grad, ep, ap, box, n, d,
                                                   float(eps), float(alpha), **common)
