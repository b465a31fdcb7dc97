"""Triton kernels of ig_accumulate: the math of kernels/ig_accumulate.h, restated in Triton.

Launcher contract as for the C++ kernels (see csrc/ig_accumulate.h): path_grads /
grad_path (S, n), x / baseline / out / grad_out / grad_x (n) and acc / grad_acc (n, the
compute type) in one dense layout (path step s at offset s * n), weights (S,) in the
compute type. One program per BLOCK elements; the forward runs the path sum over s in
a register vector, the backward writes the S path gradients of its elements. Computes
in float32 (float64 for float64 tensors).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

# One pinned config: autotuning needs a GPU, and the interpreter runs ~1 ms per program.
BLOCK = 1024
NUM_WARPS = 4


@triton.jit
def _ig_fwd_kernel(out_ptr, acc_ptr, g_ptr, x_ptr, a_ptr, w_ptr, steps, n, FP64: tl.constexpr,
                   BLOCK: tl.constexpr):
    ct = tl.float64 if FP64 else tl.float32
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    acc = tl.zeros([BLOCK], dtype=ct)
    g_ptrs = g_ptr + offs
    for s in range(0, steps):
        w = tl.load(w_ptr + s).to(ct)
        acc = acc + w * tl.load(g_ptrs, mask=mask, other=0).to(ct)
        g_ptrs += n
    x = tl.load(x_ptr + offs, mask=mask, other=0).to(ct)
    a = tl.load(a_ptr + offs, mask=mask, other=0).to(ct)
    tl.store(acc_ptr + offs, acc.to(acc_ptr.dtype.element_ty), mask=mask)
    tl.store(out_ptr + offs, ((x - a) * acc).to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _ig_bwd_kernel(gp_ptr, gx_ptr, go_ptr, ga_ptr, acc_ptr, x_ptr, a_ptr, w_ptr, steps, n,
                   FP64: tl.constexpr, BLOCK: tl.constexpr):
    ct = tl.float64 if FP64 else tl.float32
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    go = tl.load(go_ptr + offs, mask=mask, other=0).to(ct)
    ga = tl.load(ga_ptr + offs, mask=mask, other=0).to(ct)
    x = tl.load(x_ptr + offs, mask=mask, other=0).to(ct)
    a = tl.load(a_ptr + offs, mask=mask, other=0).to(ct)
    scaled = (x - a) * go + ga
    gp_ptrs = gp_ptr + offs
    for s in range(0, steps):
        w = tl.load(w_ptr + s).to(ct)
        tl.store(gp_ptrs, (w * scaled).to(gp_ptr.dtype.element_ty), mask=mask)
        gp_ptrs += n
    acc = tl.load(acc_ptr + offs, mask=mask, other=0).to(ct)
    tl.store(gx_ptr + offs, (go * acc).to(gx_ptr.dtype.element_ty), mask=mask)


def ig_accumulate_triton(out: torch.Tensor, acc: torch.Tensor, path_grads: torch.Tensor,
                         x: torch.Tensor, baseline: torch.Tensor, weights: torch.Tensor) -> None:
    """Launch the forward kernel writing acc = sum_s w_s path_grads[s] and out = (x - a) acc."""
    n = x.numel()
    if n == 0:
        return
    _ig_fwd_kernel[(triton.cdiv(n, BLOCK),)](
        out, acc, path_grads, x, baseline, weights, path_grads.shape[0], n,
        FP64=x.dtype == torch.float64, BLOCK=BLOCK, num_warps=NUM_WARPS)


def ig_accumulate_backward_triton(grad_path: torch.Tensor, grad_x: torch.Tensor,
                                  grad_out: torch.Tensor, grad_acc: torch.Tensor,
                                  acc: torch.Tensor, x: torch.Tensor, baseline: torch.Tensor,
                                  weights: torch.Tensor) -> None:
    """Launch the backward kernel writing grad_path (S, n) and grad_x (n)."""
    n = x.numel()
    if n == 0:
        return
    _ig_bwd_kernel[(triton.cdiv(n, BLOCK),)](
        grad_path, grad_x, grad_out, grad_acc, acc, x, baseline, weights, grad_path.shape[0], n,
        FP64=x.dtype == torch.float64, BLOCK=BLOCK, num_warps=NUM_WARPS)
