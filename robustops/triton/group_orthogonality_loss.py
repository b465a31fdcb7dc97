"""Triton kernels of group_orthogonality_loss: the math of kernels/group_orthogonality_loss.h.

Launcher contract as for the C++ kernels (see csrc/group_orthogonality_loss.h): features
(B, C, H, W) and grad_features contiguous of one float dtype (computed in it),
assignment (B, C) int64 contiguous, out and grad_out 0-d of that dtype (grad_out is
read on the device). Steps, no host synchronisation:
  group sums and counts  the segmented-sum kernel of robustops/triton/group_inhibition_mask.py
  gram[b, i, j]          one program per (sample, i, j), means formed on the fly
  forward                per-sample terms (one program per sample), summed in batch
                         order by one ATen reduction
  backward               dmu per (sample, group, pixel block), then dF gathered per
                         (sample, channel block, pixel block)
Labels outside [0, K) belong to no group (no term, zero gradient).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .group_inhibition_mask import BLOCK_C, BLOCK_N, NUM_WARPS, group_sums_triton


@triton.jit
def _gram_kernel(gram_ptr, sums_ptr, cnt_ptr, n, groups, BLOCK_N: tl.constexpr):
    r = tl.program_id(0).to(tl.int64)  # r = (b * K + i) * K + j
    kk = groups * groups
    b = r // kk
    i = (r % kk) // groups
    j = r % groups
    ci = tl.maximum(tl.load(cnt_ptr + b * groups + i), 1.0)
    cj = tl.maximum(tl.load(cnt_ptr + b * groups + j), 1.0)
    acc = tl.zeros([BLOCK_N], dtype=sums_ptr.dtype.element_ty)
    for start in range(0, n, BLOCK_N):
        p = start + tl.arange(0, BLOCK_N)
        pm = p < n
        si = tl.load(sums_ptr + (b * groups + i) * n + p, mask=pm, other=0.0)
        sj = tl.load(sums_ptr + (b * groups + j) * n + p, mask=pm, other=0.0)
        acc += (si / ci) * (sj / cj)  # an empty group's sum is 0: its mean is 0
    tl.store(gram_ptr + r, tl.sum(acc, axis=0))


@triton.jit
def _pairs(cnt_ptr, b, groups):
    kprime = 0
    for k in range(0, groups):
        kprime += (tl.load(cnt_ptr + b * groups + k) > 0).to(tl.int32)
    return tl.where(kprime > 1, kprime * (kprime - 1) // 2, 1)


@triton.jit
def _sample_loss_kernel(per_ptr, gram_ptr, cnt_ptr, groups):
    b = tl.program_id(0).to(tl.int64)
    s = tl.full([], 0.0, dtype=gram_ptr.dtype.element_ty)
    for i in range(0, groups):
        for j in range(i + 1, groups):
            s += tl.abs(tl.load(gram_ptr + (b * groups + i) * groups + j))
    tl.store(per_ptr + b, s / _pairs(cnt_ptr, b, groups).to(s.dtype))


@triton.jit
def _dmu_kernel(dmu_ptr, sums_ptr, cnt_ptr, gram_ptr, go_ptr, batch, n, groups,
                BLOCK_N: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)  # row = b * K + i
    b = row // groups
    i = row % groups
    p = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    pm = p < n
    ty = dmu_ptr.dtype.element_ty
    go = tl.load(go_ptr)
    pairs = _pairs(cnt_ptr, b, groups).to(ty)
    n_i = tl.load(cnt_ptr + row)
    acc = tl.zeros([BLOCK_N], dtype=ty)
    for j in range(0, groups):
        n_j = tl.load(cnt_ptr + b * groups + j)
        dot = tl.load(gram_ptr + row * groups + j)
        sgn = (dot > 0).to(ty) - (dot < 0).to(ty)
        coef = go * sgn / (pairs * batch)
        coef = tl.where((j != i) & (n_j > 0), coef, 0.0)
        mu_j = tl.load(sums_ptr + (b * groups + j) * n + p, mask=pm, other=0.0) / \
            tl.maximum(n_j, 1.0)
        acc += coef * mu_j
    acc = tl.where(n_i > 0, acc / tl.maximum(n_i, 1.0), 0.0)
    tl.store(dmu_ptr + row * n + p, acc, mask=pm)


@triton.jit
def _scatter_grad_kernel(grad_ptr, dmu_ptr, a_ptr, channels, n, groups, BLOCK_C: tl.constexpr,
                         BLOCK_N: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    p = tl.program_id(2) * BLOCK_N + tl.arange(0, BLOCK_N)
    cm = c < channels
    pm = p < n
    lab = tl.load(a_ptr + b * channels + c, mask=cm, other=-1)
    valid = (lab >= 0) & (lab < groups)
    g = b * groups + tl.where(valid, lab, 0)
    d = tl.load(dmu_ptr + g[:, None] * n + p[None, :], mask=valid[:, None] & pm[None, :],
                other=0.0)
    tl.store(grad_ptr + (b * channels + c)[:, None] * n + p[None, :], d,
             mask=cm[:, None] & pm[None, :])


def _stats(features: torch.Tensor, assignment: torch.Tensor, num_groups: int):
    b, c = features.shape[:2]
    n = features.shape[2] * features.shape[3]
    k = num_groups
    sums = torch.empty(b, k, n, dtype=features.dtype, device=features.device)
    counts = torch.empty(b, k, dtype=features.dtype, device=features.device)
    group_sums_triton(sums, counts, features.view(b, c, n), None, assignment, k)
    # The full K x K matrix (the backward reads both triangles; K^2 programs are few).
    gram = torch.empty(b, k, k, dtype=features.dtype, device=features.device)
    _gram_kernel[(b * k * k,)](gram, sums, counts, n, k, BLOCK_N=BLOCK_N, num_warps=NUM_WARPS)
    return sums, counts, gram


def group_orthogonality_loss_triton(out: torch.Tensor, features: torch.Tensor,
                                    assignment: torch.Tensor, num_groups: int) -> None:
    """Write the 0-d loss into `out`."""
    b = features.shape[0]
    if b == 0 or features.numel() == 0:
        out.zero_()
        return
    _, counts, gram = _stats(features, assignment, num_groups)
    per_sample = torch.empty(b, dtype=features.dtype, device=features.device)
    _sample_loss_kernel[(b,)](per_sample, gram, counts, num_groups, num_warps=1)
    torch.div(per_sample.sum(), b, out=out)


def group_orthogonality_loss_backward_triton(grad: torch.Tensor, grad_out: torch.Tensor,
                                             features: torch.Tensor, assignment: torch.Tensor,
                                             num_groups: int) -> None:
    """Write dL/dfeatures into `grad` (like features) given the 0-d grad_out."""
    b, c = features.shape[:2]
    n = features.shape[2] * features.shape[3]
    if grad.numel() == 0:
        return
    k = num_groups
    sums, counts, gram = _stats(features, assignment, k)
    dmu = torch.empty(b, k, n, dtype=features.dtype, device=features.device)
    _dmu_kernel[(b * k, triton.cdiv(n, BLOCK_N))](dmu, sums, counts, gram, grad_out, b, n, k,
                                                   BLOCK_N=BLOCK_N, num_warps=NUM_WARPS)
    grid = (b, triton.cdiv(c, BLOCK_C), triton.cdiv(n, BLOCK_N))
    _scatter_grad_kernel[grid](grad, dmu, assignment, c, n, k, BLOCK_C=BLOCK_C, BLOCK_N=BLOCK_N,
                               num_warps=NUM_WARPS)
