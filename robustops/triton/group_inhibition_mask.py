"""Triton kernels of group_inhibition_mask: the math of kernels/group_inhibition_mask.h.

Launcher contract as for the C++ kernels (see csrc/group_inhibition_mask.h): features,
grad and out (B, C, H, W) contiguous of one float dtype (computed in it), assignment
(B, C) int64 contiguous. Four launches, no host synchronisation:
  1. w[b, c]     channel weights: a [BLOCK_R, BLOCK_N] tile of rows per program
  2. m, s        group maps and group weights: one program per (sample, pixel block,
                 group block) runs over the channels in blocks and adds each channel
                 into its group's row through a one-hot [BLOCK_K, BLOCK_C] selector
                 (also the segmented sums of group_orthogonality_loss, unweighted)
  3. mu, sd      per (sample, group): two loops over the map
  4. out         the mask gathered per (sample, channel block, pixel block)
Labels outside [0, K) match no group: mask 1. A flat map (sd <= FLAT_RTOL |mu|, the rule
of kernels/group_inhibition_mask.h) has z = 0: mask 0.5.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

# One pinned config: autotuning needs a GPU, and the interpreter runs ~1 ms per program.
BLOCK_R = 16
BLOCK_C = 16
BLOCK_N = 64
BLOCK_K = 8
NUM_WARPS = 4
STD_EPS = tl.constexpr(1e-8)
FLAT_ULPS = 1024.0  # kGimFlatUlps: flat when sd <= FLAT_ULPS * eps(dtype) * |mu|


@triton.jit
def _channel_weight_kernel(w_ptr, g_ptr, rows, n, BLOCK_R: tl.constexpr, BLOCK_N: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    r = pid * BLOCK_R + tl.arange(0, BLOCK_R)
    rm = r < rows
    acc = tl.zeros([BLOCK_R, BLOCK_N], dtype=w_ptr.dtype.element_ty)
    for start in range(0, n, BLOCK_N):
        i = start + tl.arange(0, BLOCK_N)
        m = rm[:, None] & (i < n)[None, :]
        acc += tl.load(g_ptr + r[:, None] * n + i[None, :], mask=m, other=0.0)
    total = tl.sum(acc, axis=1)
    tl.store(w_ptr + r, total / n, mask=rm)


@triton.jit
def _group_sum_kernel(out_ptr, tot_ptr, x_ptr, w_ptr, a_ptr, channels, n, groups,
                      WEIGHTED: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_C: tl.constexpr,
                      BLOCK_N: tl.constexpr):
    """out[b, k, :] = sum over channels c of group k of (w[b, c] *) x[b, c, :];
    tot[b, k] = sum of w[b, c] (WEIGHTED) or the channel count (written by pixel block 0)."""
    b = tl.program_id(0).to(tl.int64)
    nb = tl.program_id(1)
    kb = tl.program_id(2)
    k = kb * BLOCK_K + tl.arange(0, BLOCK_K)
    i = nb * BLOCK_N + tl.arange(0, BLOCK_N)
    im = i < n
    ty = out_ptr.dtype.element_ty
    acc = tl.zeros([BLOCK_K, BLOCK_N], dtype=ty)
    tot = tl.zeros([BLOCK_K], dtype=ty)
    for c0 in range(0, channels, BLOCK_C):
        c = c0 + tl.arange(0, BLOCK_C)
        cm = c < channels
        lab = tl.load(a_ptr + b * channels + c, mask=cm, other=-1)
        xv = tl.load(x_ptr + (b * channels + c)[:, None] * n + i[None, :],
                     mask=cm[:, None] & im[None, :], other=0.0)
        if WEIGHTED:
            wv = tl.load(w_ptr + b * channels + c, mask=cm, other=0.0)
        else:
            wv = tl.where(cm, 1.0, 0.0).to(ty)
        xv = xv * wv[:, None]
        onehot = lab[None, :] == k[:, None]                                # [BLOCK_K, BLOCK_C]
        acc += tl.sum(tl.where(onehot[:, :, None], xv[None, :, :], 0.0), axis=1)
        tot += tl.sum(tl.where(onehot, wv[None, :], 0.0), axis=1)
    km = k < groups
    tl.store(out_ptr + (b * groups + k)[:, None] * n + i[None, :], acc,
             mask=km[:, None] & im[None, :])
    tl.store(tot_ptr + b * groups + k, tot, mask=km & (nb == 0))


@triton.jit
def _group_stats_kernel(mu_ptr, sd_ptr, m_ptr, n, BLOCK_N: tl.constexpr):
    r = tl.program_id(0).to(tl.int64)
    acc = tl.zeros([BLOCK_N], dtype=m_ptr.dtype.element_ty)
    for start in range(0, n, BLOCK_N):
        i = start + tl.arange(0, BLOCK_N)
        acc += tl.load(m_ptr + r * n + i, mask=i < n, other=0.0)
    mean = tl.sum(acc, axis=0) / n
    dev = tl.zeros([BLOCK_N], dtype=m_ptr.dtype.element_ty)
    for start in range(0, n, BLOCK_N):
        i = start + tl.arange(0, BLOCK_N)
        d = tl.where(i < n, tl.load(m_ptr + r * n + i, mask=i < n, other=0.0) - mean, 0.0)
        dev += d * d
    tl.store(mu_ptr + r, mean)
    tl.store(sd_ptr + r, tl.sqrt(tl.sum(dev, axis=0) / n))


@triton.jit
def _mask_kernel(out_ptr, m_ptr, mu_ptr, sd_ptr, s_ptr, a_ptr, channels, n, groups,
                 FLAT_RTOL: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_N: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    i = tl.program_id(2) * BLOCK_N + tl.arange(0, BLOCK_N)
    cm = c < channels
    im = i < n
    lab = tl.load(a_ptr + b * channels + c, mask=cm, other=-1)
    valid = (lab >= 0) & (lab < groups)
    g = b * groups + tl.where(valid, lab, 0)
    ok = valid[:, None] & im[None, :]
    mv = tl.load(m_ptr + g[:, None] * n + i[None, :], mask=ok, other=0.0)
    mu = tl.load(mu_ptr + g, mask=valid, other=0.0)
    sd = tl.load(sd_ptr + g, mask=valid, other=0.0)
    s = tl.load(s_ptr + g, mask=valid, other=0.0)
    # Padding lanes get z = 0 (their m is a placeholder: no overflow to warn about).
    # A flat map (sd is the rounding noise of mu) has z = 0; NaN compares false.
    flat = sd <= FLAT_RTOL * tl.abs(mu)
    z = tl.where(ok & (flat == 0)[:, None], (mv - mu[:, None]) / (sd[:, None] + STD_EPS), 0.0)
    val = 1.0 / (1.0 + tl.exp(z))
    # not (s <= 0): a NaN group weight inhibits (NaN mask), as kernels/gim_inhibits
    val = tl.where((valid & ~(s <= 0))[:, None], val, 1.0)
    tl.store(out_ptr + (b * channels + c)[:, None] * n + i[None, :],
             val.to(out_ptr.dtype.element_ty), mask=cm[:, None] & im[None, :])


def group_sums_triton(out: torch.Tensor, totals: torch.Tensor, x: torch.Tensor,
                      weights: torch.Tensor | None, assignment: torch.Tensor,
                      num_groups: int) -> None:
    """out (B, K, N) = per-group (weighted) sums of the channels of x (B, C, N);
    totals (B, K) = the groups' weight sums (or channel counts when weights is None)."""
    b, c, n = x.shape
    grid = (b, triton.cdiv(n, BLOCK_N), triton.cdiv(num_groups, BLOCK_K))
    _group_sum_kernel[grid](out, totals, x, weights if weights is not None else x, assignment,
                            c, n, num_groups, WEIGHTED=weights is not None, BLOCK_K=BLOCK_K,
                            BLOCK_C=BLOCK_C, BLOCK_N=BLOCK_N, num_warps=NUM_WARPS)


def group_inhibition_mask_triton(out: torch.Tensor, features: torch.Tensor, grad: torch.Tensor,
                                 assignment: torch.Tensor, num_groups: int) -> None:
    """Write the (B, C, H, W) mask into `out`."""
    b, c = features.shape[:2]
    n = features.shape[2] * features.shape[3]
    if out.numel() == 0:
        return
    k = num_groups
    x = features.view(b, c, n)
    w = torch.empty(b, c, dtype=features.dtype, device=features.device)
    _channel_weight_kernel[(triton.cdiv(b * c, BLOCK_R),)](w, grad, b * c, n, BLOCK_R=BLOCK_R,
                                                           BLOCK_N=BLOCK_N, num_warps=NUM_WARPS)
    m = torch.empty(b, k, n, dtype=features.dtype, device=features.device)
    s = torch.empty(b, k, dtype=features.dtype, device=features.device)
    group_sums_triton(m, s, x, w, assignment, k)
    mu = torch.empty(b, k, dtype=features.dtype, device=features.device)
    sd = torch.empty_like(mu)
    _group_stats_kernel[(b * k,)](mu, sd, m, n, BLOCK_N=BLOCK_N, num_warps=NUM_WARPS)
    grid = (b, triton.cdiv(c, BLOCK_C), triton.cdiv(n, BLOCK_N))
    flat_rtol = FLAT_ULPS * torch.finfo(features.dtype).eps
    _mask_kernel[grid](out, m, mu, sd, s, assignment, c, n, k, FLAT_RTOL=flat_rtol,
                       BLOCK_C=BLOCK_C, BLOCK_N=BLOCK_N, num_warps=NUM_WARPS)
