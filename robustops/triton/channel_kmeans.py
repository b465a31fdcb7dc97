"""Triton kernels of channel_kmeans: the math of kernels/channel_kmeans.h, restated in Triton.

Launcher contract: x (B, C, N) contiguous float32/float64 (computed in its dtype), N >= 1,
B >= 1; init (B, K) int64 distinct channels. Returns (assignment (B, C), medoids (B, K),
iterations (B,)) int64, as channel_kmeans_reference, whose iteration this follows step by
step: max_iter iterations launched from Python, each sample's convergence flag kept on
the device (no host synchronisation). A converged sample skips the work of kernels 1, 3
and 4 (their loops run zero times and their stores are masked), so its state freezes.

Launches, per iteration:
  1. _assign_kernel (B, C/BLOCK_C): a tile of channels against the K medoid channels (K in
     blocks of BLOCK_K, N in blocks of BLOCK_N): squared distances sum (x - m)^2
     (km_sq_term, the paper's formula), argmin over K (first
     index on ties, a NaN first, as torch.argmin) and the minimum distance. The (B, C, K)
     distances never reach memory; writes the assignment and minimum of live samples.
  2. group sums and counts: group_sums_triton of triton/group_inhibition_mask.py (unweighted).
  3. _snap_key_kernel (B, C/BLOCK_C, K/BLOCK_K): squared distance of every channel to every
     group mean (the sums divided by max(count, 1) as they are loaded), or for an empty
     group 0 (the first free channel, as the paper's NaN mean) or, reseed_farthest, the
     -minimum distance (the farthest free channel) -> keys (B, K, C).
  4. _snap_kernel (B,): group by group, the first channel minimising its key among the
     channels not taken by earlier groups; the shift; the state update (medoids,
     iterations, converged flag).
Divisions and square roots round as IEEE (_div, _sqrt), as on the CPU.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .group_inhibition_mask import group_sums_triton

# One pinned config: autotuning needs a GPU, and the interpreter runs ~1 ms per program.
BLOCK_C = 16
BLOCK_K = 8
BLOCK_N = 64
NUM_WARPS = 4
# Index sentinel: above every channel and group index ("none found yet").
NONE = tl.constexpr(2**31 - 1)


@triton.jit
def _div(a, b):
    """a / b rounded as IEEE (Triton's float32 `/` may be approximate; float64's is not)."""
    if a.dtype == tl.float32:
        return tl.div_rn(a, b)
    return a / b


@triton.jit
def _sqrt(a):
    """sqrt(a) rounded as IEEE (as _div)."""
    if a.dtype == tl.float32:
        return tl.sqrt_rn(a)
    return tl.sqrt(a)


@triton.jit
def _argmin(v, idx, axis: tl.constexpr):
    """torch.argmin along `axis`: (value, index) of the first minimum, a NaN counting as the
    minimum (the first NaN wins). Padding lanes must hold +inf and indices above the real
    ones (which then win every tie)."""
    nan = v != v
    nan_i = tl.min(tl.where(nan, idx, NONE), axis=axis)
    low = tl.min(tl.where(nan, float("inf"), v), axis=axis)
    first = tl.min(tl.where(v == tl.expand_dims(low, axis), idx, NONE), axis=axis)
    has_nan = nan_i < NONE
    return tl.where(has_nan, float("nan"), low), tl.where(has_nan, nan_i, first)


@triton.jit
def _merge(best_v, best_i, v, i):
    """The running argmin over blocks visited in increasing index order (best_i = NONE:
    nothing yet): a later block wins only with a strictly smaller value or the first NaN."""
    take = (best_i == NONE) | ((v != v) & (best_v == best_v)) | (v < best_v)
    return tl.where(take, v, best_v), tl.where(take, i, best_i)


@triton.jit
def _dots(x_ptr, xrow, xm, y_ptr, yrow, ym, den, n, n_end, MEAN: tl.constexpr,
          BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr):
    """[BLOCK_C, BLOCK_K] squared distances sum_i (x[xrow, i] - y[yrow, i])^2 (y divided by
    den, per row, when MEAN: the group means), N in blocks up to n_end (0: skip): the
    paper's pairwise_distance, difference first (km_sq_term), so ties round as there."""
    acc = tl.zeros([BLOCK_C, BLOCK_K], dtype=x_ptr.dtype.element_ty)
    for start in range(0, n_end, BLOCK_N):
        i = start + tl.arange(0, BLOCK_N)
        im = i < n
        xv = tl.load(x_ptr + xrow[:, None] + i[None, :], mask=xm[:, None] & im[None, :],
                     other=0.0)
        yv = tl.load(y_ptr + yrow[:, None] + i[None, :], mask=ym[:, None] & im[None, :],
                     other=0.0)
        if MEAN:
            yv = _div(yv, den[:, None])
        diff = xv[:, None, :] - yv[None, :, :]
        acc += tl.sum(diff * diff, axis=2)
    return acc


@triton.jit
def _assign_kernel(a_ptr, mind_ptr, x_ptr, xx_ptr, med_ptr, done_ptr, channels, n, groups,
                   BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    cm = c < channels
    live = tl.load(done_ptr + b) == 0
    n_end = tl.where(live, n, 0)
    row = b * channels + c
    xx = tl.load(xx_ptr + row, mask=cm, other=0.0)
    best_v = tl.full([BLOCK_C], float("inf"), dtype=x_ptr.dtype.element_ty)
    best_i = tl.full([BLOCK_C], NONE, dtype=tl.int32)
    for k0 in range(0, tl.where(live, groups, 0), BLOCK_K):
        k = k0 + tl.arange(0, BLOCK_K)
        km = k < groups
        med = tl.load(med_ptr + b * groups + k, mask=km, other=0)
        d = _dots(x_ptr, row * n, cm, x_ptr, (b * channels + med) * n, km, xx, n, n_end,
                  False, BLOCK_C, BLOCK_K, BLOCK_N)                         # km_sq_term sums
        d = tl.where(km[None, :], d, float("inf"))
        v, i = _argmin(d, k[None, :], 1)
        best_v, best_i = _merge(best_v, best_i, v, i)
    tl.store(a_ptr + row, best_i.to(tl.int64), mask=cm & live)
    tl.store(mind_ptr + row, best_v, mask=cm & live)


@triton.jit
def _snap_key_kernel(key_ptr, x_ptr, xx_ptr, sum_ptr, cnt_ptr, mind_ptr, done_ptr, channels,
                     n, groups, FARTHEST: tl.constexpr, BLOCK_C: tl.constexpr,
                     BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    k = tl.program_id(2) * BLOCK_K + tl.arange(0, BLOCK_K)
    cm = c < channels
    km = k < groups
    live = tl.load(done_ptr + b) == 0
    row = b * channels + c
    cnt = tl.load(cnt_ptr + b * groups + k, mask=km, other=0.0)
    key = _dots(x_ptr, row * n, cm, sum_ptr, (b * groups + k) * n, km, tl.maximum(cnt, 1.0), n,
                tl.where(live, n, 0), True, BLOCK_C, BLOCK_K, BLOCK_N)     # km_sq_term sums
    mind = tl.load(mind_ptr + row, mask=cm, other=0.0)
    if FARTHEST:  # empty group: re-seed at the free channel farthest from its medoid
        key = tl.where(cnt[None, :] > 0, key, -mind[:, None])
    else:  # empty group: equal keys, the first free channel (the paper's NaN mean)
        key = tl.where(cnt[None, :] > 0, key, 0.0)
    tl.store(key_ptr + (b * groups + k)[None, :] * channels + c[:, None], key,
             mask=cm[:, None] & km[None, :] & live)


@triton.jit
def _snap_kernel(med_ptr, it_ptr, done_ptr, key_ptr, x_ptr, thr_ptr, channels, n, groups,
                 GROUPS: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_N: tl.constexpr):
    """One program per sample: the K snaps in order, the shift and the state update."""
    b = tl.program_id(0).to(tl.int64)
    live = tl.load(done_ptr + b) == 0
    kk = tl.arange(0, GROUPS)
    km = kk < groups
    chosen = tl.full([GROUPS], -1, dtype=tl.int32)  # -1 matches no channel
    for j in range(0, tl.where(live, groups, 0)):
        best_v = tl.full([1], float("inf"), dtype=key_ptr.dtype.element_ty)
        best_i = tl.full([1], NONE, dtype=tl.int32)
        for c0 in range(0, channels, BLOCK_C):
            c = c0 + tl.arange(0, BLOCK_C)
            cm = c < channels
            key = tl.load(key_ptr + (b * groups + j) * channels + c, mask=cm, other=0.0)
            taken = tl.max(tl.where(c[None, :] == chosen[:, None], 1, 0), axis=0) > 0
            key = tl.where(taken | ~cm, float("inf"), key)
            v, i = _argmin(key[None, :], c[None, :], 1)
            best_v, best_i = _merge(best_v, best_i, v, i)
        chosen = tl.where(kk == j, best_i, chosen)
    new = tl.where(km, chosen, 0)
    old = tl.load(med_ptr + b * groups + kk, mask=km, other=0)
    acc = tl.zeros([GROUPS], dtype=x_ptr.dtype.element_ty)
    for start in range(0, tl.where(live, n, 0), BLOCK_N):
        i = start + tl.arange(0, BLOCK_N)
        m = km[:, None] & (i < n)[None, :]
        xn = tl.load(x_ptr + ((b * channels + new) * n)[:, None] + i[None, :], mask=m, other=0.0)
        xo = tl.load(x_ptr + ((b * channels + old) * n)[:, None] + i[None, :], mask=m, other=0.0)
        moved = xn - xo
        acc += tl.sum(moved * moved, axis=1)
    shift = tl.sum(tl.where(km, _sqrt(acc), 0.0), axis=0)
    converged = shift * shift < tl.load(thr_ptr)
    tl.store(med_ptr + b * groups + kk, new.to(tl.int64), mask=km & live)
    tl.store(it_ptr + b, tl.load(it_ptr + b) + 1, mask=live)
    tl.store(done_ptr + b, converged.to(tl.int32), mask=live)


def channel_kmeans_triton(x: torch.Tensor, init: torch.Tensor, max_iter: int,
                          shift_threshold: float, reseed_farthest: bool = False
                          ) -> tuple[torch.Tensor, ...]:
    """k-means of the channels of x (B, C, N) from the medoids init (B, K); see the module doc."""
    b, c, n = x.shape
    k = init.shape[1]
    dev, dt = x.device, x.dtype
    xx = (x * x).sum(-1)                          # unused by the distances (kept as an argument)
    medoids = init.clone()
    assignment = torch.zeros(b, c, dtype=torch.int64, device=dev)
    iterations = torch.zeros(b, dtype=torch.int64, device=dev)
    done = torch.zeros(b, dtype=torch.int32, device=dev)
    mind = torch.empty(b, c, dtype=dt, device=dev)
    sums = torch.empty(b, k, n, dtype=dt, device=dev)
    counts = torch.empty(b, k, dtype=dt, device=dev)
    keys = torch.empty(b, k, c, dtype=dt, device=dev)
    # The reference compares shift^2 < threshold in the features' dtype.
    thr = torch.full((1,), float(shift_threshold), dtype=dt, device=dev)
    groups = triton.next_power_of_2(k)
    # The snap kernel holds GROUPS rows of x at once: fewer columns when K is large.
    block_ns = max(16, min(BLOCK_N, 4096 // groups))
    grid = (b, triton.cdiv(c, BLOCK_C))
    for _ in range(max_iter):
        _assign_kernel[grid](assignment, mind, x, xx, medoids, done, c, n, k, BLOCK_C=BLOCK_C,
                             BLOCK_K=BLOCK_K, BLOCK_N=BLOCK_N, num_warps=NUM_WARPS)
        group_sums_triton(sums, counts, x, None, assignment, k)
        _snap_key_kernel[grid + (triton.cdiv(k, BLOCK_K),)](
            keys, x, xx, sums, counts, mind, done, c, n, k, FARTHEST=reseed_farthest,
            BLOCK_C=BLOCK_C, BLOCK_K=BLOCK_K,
            BLOCK_N=BLOCK_N, num_warps=NUM_WARPS)
        _snap_kernel[(b,)](medoids, iterations, done, keys, x, thr, c, n, k, GROUPS=groups,
                           BLOCK_C=BLOCK_C, BLOCK_N=block_ns, num_warps=NUM_WARPS)
    return assignment, medoids, iterations
