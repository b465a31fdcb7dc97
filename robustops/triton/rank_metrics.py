"""Triton kernels of rank_metrics: top-k intersection, Kendall tau-b, Spearman rho.

Launcher contract: a, b (B, N) contiguous, one float dtype (float32 or float64), no
NaN (the ops file checks); out (B, 3) float64 [top-k, tau-b, rho]; 1 <= k <= N.
The rows of a and b are stacked into one (2B, N) tensor (-0.0 folded into +0.0) and
sorted once by torch (stable, ascending); then three launches, no host sync:

  1. ranks      per (row of the stack, block of sorted positions p): two binary
                searches in the sorted row give the run [lb, ub) of equal values
                around p; the element's average 1-based rank (lb + ub + 1) / 2 and
                its top-k membership (#greater + #equal-with-lower-index =
                (N - ub) + (p - lb) < k, the stable-descending rule) are scattered
                to its original index; sum of (ub - lb - 1) over the block is twice
                the block's share of tied pairs (sum over runs of t (t - 1) / 2)
  2. kendall    per (pair, tile of BLOCK_I indices i): loop over j > i in tiles of
                BLOCK_J, sum sign(a_i - a_j) sign(b_i - b_j) = C - D (pairs tied in
                a or b add 0); exact O(N^2) count, summed per step into int64
  3. finish     per pair: hits of the two top-k masks, Pearson of the average ranks
                (their mean is (N + 1) / 2 exactly), and
                tau-b = (C - D) / sqrt((n0 - n1)(n0 - n2)) as scipy, in float64;
                a constant row gives 0 / 0 = NaN, as scipy.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

# One pinned config: autotuning needs a GPU, and the interpreter runs ~1 ms per program.
BLOCK = 1024       # sorted positions per rank program; elements per finish-loop step
BLOCK_I = 64       # Kendall: i indices per program
BLOCK_J = 128      # Kendall: j indices per inner step
NUM_WARPS = 4


@triton.jit
def _search(row_ptr, v, lo, hi, steps, UPPER: tl.constexpr):
    """Per lane, the first index in [lo, hi) of a sorted row whose value is > v (UPPER)
    or >= v (lower bound); hi when there is none. steps >= bit length of max(hi - lo)."""
    for _ in range(steps):
        active = lo < hi
        mid = (lo + hi) // 2
        x = tl.load(row_ptr + mid, mask=active, other=0)
        if UPPER:
            right = active & (x <= v)
        else:
            right = active & (x < v)
        left = active & (right == 0)
        lo = tl.where(right, mid + 1, lo)
        hi = tl.where(left, mid, hi)
    return lo


@triton.jit
def _rank_kernel(rank_ptr, top_ptr, tie_ptr, sv_ptr, si_ptr, n, k, steps,
                 BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    blk = tl.program_id(1)
    # int64 positions: the searches' index arithmetic then needs no overflow checks
    # in the interpreter (and cannot overflow on the GPU).
    p = (blk * BLOCK + tl.arange(0, BLOCK)).to(tl.int64)
    pm = p < n
    base = row * n
    v = tl.load(sv_ptr + base + p, mask=pm, other=0)
    src = tl.load(si_ptr + base + p, mask=pm, other=0)
    zero = tl.zeros_like(p)
    # Padding lanes get empty ranges (lo == hi): they load nothing.
    lb = _search(sv_ptr + base, v, zero, tl.where(pm, p, 0), steps, False)
    ub = _search(sv_ptr + base, v, p + 1, tl.where(pm, zero + n, p + 1), steps, True)
    avg = (lb + ub + 1).to(tl.float64) * 0.5
    tl.store(rank_ptr + base + src, avg, mask=pm)
    top = ((n - ub) + (p - lb)) < k
    tl.store(top_ptr + base + src, top.to(tl.int8), mask=pm)
    tied = tl.where(pm, ub - lb - 1, 0).to(tl.int64)
    tl.store(tie_ptr + row * tl.num_programs(1) + blk, tl.sum(tied, axis=0))


@triton.jit
def _kendall_kernel(part_ptr, x_ptr, rows, n, BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr):
    r = tl.program_id(0).to(tl.int64)
    t = tl.program_id(1)
    a_row = x_ptr + r * n
    b_row = x_ptr + (r + rows) * n
    i = t * BLOCK_I + tl.arange(0, BLOCK_I)
    im = i < n
    ai = tl.load(a_row + i, mask=im, other=0)[:, None]
    bi = tl.load(b_row + i, mask=im, other=0)[:, None]
    acc = tl.zeros([BLOCK_I], dtype=tl.int64)
    for j0 in range(t * BLOCK_I, n, BLOCK_J):
        j = j0 + tl.arange(0, BLOCK_J)
        jm = j < n
        aj = tl.load(a_row + j, mask=jm, other=0)[None, :]
        bj = tl.load(b_row + j, mask=jm, other=0)[None, :]
        # sign(a_i - a_j) sign(b_i - b_j) by selects (no integer arithmetic on the tile):
        # +1 concordant, -1 discordant, 0 tied in a or in b (or not a pair i < j < n).
        counted = (i[:, None] < j[None, :]) & jm[None, :] & (ai != aj) & (bi != bj)
        s = tl.where(counted, tl.where((ai > aj) == (bi > bj), 1, -1), 0)
        acc += tl.sum(s, axis=1).to(tl.int64)  # |row sum| <= BLOCK_J
    tl.store(part_ptr + r * tl.num_programs(1) + t, tl.sum(acc, axis=0))


@triton.jit
def _row_sum(ptr, count, BLOCK: tl.constexpr):
    """Sum of count int64 values from ptr."""
    acc = tl.zeros([BLOCK], dtype=tl.int64)
    for s in range(0, count, BLOCK):
        o = s + tl.arange(0, BLOCK)
        acc += tl.load(ptr + o, mask=o < count, other=0)
    return tl.sum(acc, axis=0)


@triton.jit
def _finish_kernel(out_ptr, rank_ptr, top_ptr, tie_ptr, conc_ptr, rows, n, k, rank_blocks,
                   tiles, BLOCK: tl.constexpr):
    r = tl.program_id(0).to(tl.int64)
    nf = (tl.zeros([], dtype=tl.int64) + n).to(tl.float64)
    mean = (nf + 1.0) * 0.5
    hits = tl.zeros([BLOCK], dtype=tl.int64)
    sxy = tl.zeros([BLOCK], dtype=tl.float64)
    sxx = tl.zeros([BLOCK], dtype=tl.float64)
    syy = tl.zeros([BLOCK], dtype=tl.float64)
    for s in range(0, n, BLOCK):
        o = s + tl.arange(0, BLOCK)
        m = o < n
        ta = tl.load(top_ptr + r * n + o, mask=m, other=0)
        tb = tl.load(top_ptr + (r + rows) * n + o, mask=m, other=0)
        hits += (ta * tb).to(tl.int64)
        da = tl.where(m, tl.load(rank_ptr + r * n + o, mask=m, other=0) - mean, 0.0)
        db = tl.where(m, tl.load(rank_ptr + (r + rows) * n + o, mask=m, other=0) - mean, 0.0)
        sxy += da * db
        sxx += da * da
        syy += db * db
    # The tie sums count every tied pair twice.
    ties_a = _row_sum(tie_ptr + r * rank_blocks, rank_blocks, BLOCK).to(tl.float64) * 0.5
    ties_b = _row_sum(tie_ptr + (r + rows) * rank_blocks, rank_blocks, BLOCK).to(tl.float64) * 0.5
    conc = _row_sum(conc_ptr + r * tiles, tiles, BLOCK).to(tl.float64)
    n0 = nf * (nf - 1.0) * 0.5
    tau = conc / tl.sqrt((n0 - ties_a) * (n0 - ties_b))
    rho = tl.sum(sxy, axis=0) / tl.sqrt(tl.sum(sxx, axis=0) * tl.sum(syy, axis=0))
    kf = (tl.zeros([], dtype=tl.int64) + k).to(tl.float64)
    tl.store(out_ptr + r * 3, tl.sum(hits, axis=0).to(tl.float64) / kf)
    tl.store(out_ptr + r * 3 + 1, tau)
    tl.store(out_ptr + r * 3 + 2, rho)


def rank_metrics_triton(out: torch.Tensor, a: torch.Tensor, b: torch.Tensor, k: int) -> None:
    """Write [top-k intersection, Kendall tau-b, Spearman rho] of each row pair into out (B, 3)."""
    rows, n = a.shape
    if rows == 0:
        return
    dev = a.device
    x = torch.cat([a, b]) + 0.0  # (2B, N); -0.0 + 0.0 = +0.0, so signed zeros tie in the sort
    sv, si = torch.sort(x, dim=1, stable=True)
    ranks = torch.empty(2 * rows, n, dtype=torch.float64, device=dev)
    top = torch.empty(2 * rows, n, dtype=torch.int8, device=dev)
    rank_blocks = triton.cdiv(n, BLOCK)
    ties = torch.empty(2 * rows, rank_blocks, dtype=torch.int64, device=dev)
    _rank_kernel[(2 * rows, rank_blocks)](ranks, top, ties, sv, si, n, k, n.bit_length(),
                                          BLOCK=BLOCK, num_warps=NUM_WARPS)
    tiles = triton.cdiv(n, BLOCK_I)
    conc = torch.empty(rows, tiles, dtype=torch.int64, device=dev)
    _kendall_kernel[(rows, tiles)](conc, x, rows, n, BLOCK_I=BLOCK_I, BLOCK_J=BLOCK_J,
                                   num_warps=NUM_WARPS)
    _finish_kernel[(rows,)](out, ranks, top, ties, conc, rows, n, k, rank_blocks, tiles,
                            BLOCK=BLOCK, num_warps=NUM_WARPS)
