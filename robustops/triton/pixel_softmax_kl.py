"""Triton kernels of pixel_softmax_kl: the math of kernels/pixel_softmax_kl.h, in Triton.

Launcher contract as for the C++ kernels (see csrc/pixel_softmax_kl.h): attr (B, C, N)
contiguous, out / grad_out (B,), lse (B,) in the compute type, grad_s (B, N). Forward:
one program per sample walks its pixels in BLOCK chunks (re-summing the C channels in
every pass, as the CUDA kernel does); backward: one program per BLOCK pixels.
Computes in float32 (float64 for float64 tensors).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 1024
NUM_WARPS = 4


@triton.jit
def _channel_sum(a_ptr, c, n, offs, mask, FP64: tl.constexpr, BLOCK: tl.constexpr):
    ct = tl.float64 if FP64 else tl.float32
    s = tl.zeros([BLOCK], dtype=ct)
    for ch in range(0, c):
        s += tl.load(a_ptr + ch * n + offs, mask=mask, other=0).to(ct)
    return s


@triton.jit
def _row_stats(a_ptr, c, n, FP64: tl.constexpr, BLOCK: tl.constexpr):
    """(max, sum exp(s - max), sum s) of one sample's channel sums s."""
    ct = tl.float64 if FP64 else tl.float32
    mx_v = tl.full([BLOCK], float("-inf"), ct)
    sum_v = tl.zeros([BLOCK], dtype=ct)
    for start in range(0, n, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        mask = offs < n
        s = _channel_sum(a_ptr, c, n, offs, mask, FP64, BLOCK)
        mx_v = tl.maximum(mx_v, tl.where(mask, s, float("-inf")))
        sum_v += s
    mx = tl.max(mx_v, 0)
    se_v = tl.zeros([BLOCK], dtype=ct)
    for start in range(0, n, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        mask = offs < n
        s = _channel_sum(a_ptr, c, n, offs, mask, FP64, BLOCK)
        se_v += tl.where(mask, tl.exp(s - mx), 0.0)
    return mx, tl.sum(se_v, 0), tl.sum(sum_v, 0)


@triton.jit
def _psk_fwd_kernel(out_ptr, lse_ptr, a_ptr, c, n, FP64: tl.constexpr, BLOCK: tl.constexpr):
    ct = tl.float64 if FP64 else tl.float32
    row = tl.program_id(0).to(tl.int64)
    mx, se, total = _row_stats(a_ptr + row * c * n, c, n, FP64, BLOCK)
    nf = n * tl.full([], 1.0, ct)
    lse = mx + tl.log(se)
    tl.store(lse_ptr + row, lse.to(lse_ptr.dtype.element_ty))
    tl.store(out_ptr + row, (lse - total / nf - tl.log(nf)).to(out_ptr.dtype.element_ty))


@triton.jit
def _psk_bwd_kernel(gs_ptr, go_ptr, lse_ptr, a_ptr, c, n, total, FP64: tl.constexpr,
                    BLOCK: tl.constexpr):
    """Elementwise over the B*N pixels with the saved logsumexp."""
    ct = tl.float64 if FP64 else tl.float32
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < total
    row = offs // n
    i = offs - row * n
    s = tl.zeros([BLOCK], dtype=ct)
    for ch in range(0, c):
        s += tl.load(a_ptr + (row * c + ch) * n + i, mask=mask, other=0).to(ct)
    go = tl.load(go_ptr + row, mask=mask, other=0).to(ct)
    lse = tl.load(lse_ptr + row, mask=mask, other=0).to(ct)
    inv_n = 1.0 / (n * tl.full([], 1.0, ct))
    tl.store(gs_ptr + offs, (go * (tl.exp(s - lse) - inv_n)).to(gs_ptr.dtype.element_ty),
             mask=mask)


def pixel_softmax_kl_triton(out: torch.Tensor, lse: torch.Tensor, attr: torch.Tensor) -> None:
    """Launch the forward kernel: out (B,) = KL(U || softmax over pixels of sum_c attr) and
    lse (B,) its logsumexp."""
    b, c, n = attr.shape
    if b == 0:
        return
    _psk_fwd_kernel[(b,)](out, lse, attr, c, n, FP64=attr.dtype == torch.float64, BLOCK=BLOCK,
                          num_warps=NUM_WARPS)


def pixel_softmax_kl_backward_triton(grad_s: torch.Tensor, grad_out: torch.Tensor,
                                     lse: torch.Tensor, attr: torch.Tensor) -> None:
    """Launch the backward kernel writing grad_s (B, N), the gradient of every channel."""
    b, c, n = attr.shape
    total = b * n
    if total == 0:
        return
    _psk_bwd_kernel[(triton.cdiv(total, BLOCK),)](
        grad_s, grad_out, lse, attr, c, n, total, FP64=attr.dtype == torch.float64, BLOCK=BLOCK,
        num_warps=NUM_WARPS)
