"""Triton kernels of sign_matched_product: the math of kernels/sign_matched_product.h.

Launcher contract as for the C++ kernels (see csrc/sign_matched_product.h): b, d
(B, N) contiguous, out / grad_out (B,), grad_b / grad_d like b. Forward: one program
per sample reduces its N elements in BLOCK chunks; backward: one program per BLOCK
elements. Computes in float32 (float64 for float64 tensors).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 1024
NUM_WARPS = 4


@triton.jit
def _sign(v):
    return (v > 0).to(v.dtype) - (v < 0).to(v.dtype)


@triton.jit
def _smp_fwd_kernel(out_ptr, b_ptr, d_ptr, n, FP64: tl.constexpr, BLOCK: tl.constexpr):
    ct = tl.float64 if FP64 else tl.float32
    row = tl.program_id(0).to(tl.int64)
    acc = tl.zeros([BLOCK], dtype=ct)
    for start in range(0, n, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        mask = offs < n
        b = tl.load(b_ptr + row * n + offs, mask=mask, other=0).to(ct)
        d = tl.load(d_ptr + row * n + offs, mask=mask, other=0).to(ct)
        sd = _sign(d)
        m = (_sign(b) == sd).to(ct)
        acc += m * b * d + (1.0 - m) * (d * sd)
    tl.store(out_ptr + row, tl.sum(acc, 0).to(out_ptr.dtype.element_ty))


@triton.jit
def _smp_bwd_kernel(gb_ptr, gd_ptr, go_ptr, b_ptr, d_ptr, n, total, FP64: tl.constexpr,
                    BLOCK: tl.constexpr):
    ct = tl.float64 if FP64 else tl.float32
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < total
    go = tl.load(go_ptr + offs // n, mask=mask, other=0).to(ct)
    b = tl.load(b_ptr + offs, mask=mask, other=0).to(ct)
    d = tl.load(d_ptr + offs, mask=mask, other=0).to(ct)
    sd = _sign(d)
    m = (_sign(b) == sd).to(ct)
    tl.store(gb_ptr + offs, (go * m * d).to(gb_ptr.dtype.element_ty), mask=mask)
    tl.store(gd_ptr + offs, (go * (m * b + (1.0 - m) * sd)).to(gd_ptr.dtype.element_ty),
             mask=mask)


def sign_matched_product_triton(out: torch.Tensor, b: torch.Tensor, d: torch.Tensor) -> None:
    """Launch the forward kernel: out (B,) = per-sample sign-matched product of b and d."""
    rows, n = b.shape
    if rows == 0:
        return
    _smp_fwd_kernel[(rows,)](out, b, d, n, FP64=b.dtype == torch.float64, BLOCK=BLOCK,
                             num_warps=NUM_WARPS)


def sign_matched_product_backward_triton(grad_b: torch.Tensor, grad_d: torch.Tensor,
                                         grad_out: torch.Tensor, b: torch.Tensor,
                                         d: torch.Tensor) -> None:
    """Launch the backward kernel writing grad_b and grad_d (B, N)."""
    rows, n = b.shape
    total = rows * n
    if total == 0:
        return
    _smp_bwd_kernel[(triton.cdiv(total, BLOCK),)](
        grad_b, grad_d, grad_out, b, d, n, total, FP64=b.dtype == torch.float64, BLOCK=BLOCK,
        num_warps=NUM_WARPS)
