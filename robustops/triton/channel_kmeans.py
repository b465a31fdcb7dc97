"""Triton kernels of channel_kmeans: the math of kernels/channel_kmeans.h, restated in Triton.

Launcher contract: x (B, C, N) contiguous float32/float64 (computed in its dtype), N >= 1,
B >= 1; init (B, K) int64 distinct channels. Returns (assignment (B, C), medoids (B, K),
iterations (B,)) int64, as channel_kmeans_reference, whose iteration this follows step by
step: max_iter iterations launched from Python, each sample's convergence flag kept on
the device (no host synchronisation; only for CPU tensors, i.e. under TRITON_INTERPRET=1,
where reading the flags costs no synchronisation, the launches stop once every sample has
converged). A converged sample skips the work of every kernel (their loops run zero times
and their stores are masked), so its state freezes.

Launches, per iteration:
  1. _assign_kernel (B, C/BLOCK_C): a tile of channels against the K medoid channels (K in
     blocks of BLOCK_K): squared distances sum (x - m)^2 (km_sq_term, the paper's formula),
     argmin over K (first index on ties, a NaN first, as torch.argmin) and the minimum
     distance. The (B, C, K) distances never reach memory; writes the assignment and
     minimum of live samples.
  2. _group_mean_kernel (B, column blocks), once per kind of column (below): every
     group's channel count and mean, the members streamed in channel order.
  3. _snap_key_kernel (B, C/BLOCK_C, K/BLOCK_K): squared distance of every channel to every
     group mean, or for an empty group 0 (the first free channel, as the paper's NaN mean)
     or, reseed_farthest, the -minimum distance (the farthest free channel) -> keys (B, K, C).
  4. _snap_kernel (B,): group by group, the first channel minimising its key among the
     channels not taken by earlier groups; the shift; the state update (medoids,
     iterations, converged flag).

Summation order: every sum rounds as torch's CPU sum that the paper's code runs (cascade_sum
of aten/src/ATen/native/cpu/SumKernel.cpp), i.e. as csrc/cpu/channel_kmeans.cpp, whose "sum
order" comment this restates (so ties break as there, bit for bit under the interpreter):
  - A distance (channel to medoid, channel to group mean, old to new medoid) is torch's sum
    of one row of n terms (_sq_dist_sums): L = 32 bytes / itemsize lanes (8 float32, 4
    float64; L = 1 for n < L), W = 4L running sums held as a [.., W] accumulator to which
    the n // W full rows of W terms are added elementwise in order (lanes are independent
    chains); after every 2^lp rows (lp = max(4, ceil_log2(n // W) / 4)) a three-level
    cascade passes the accumulator up (_cascade); then level 0 + 1 + 2 + 3; the < W terms
    left (the partial row) are whole vectors of L added into sums 0..L-1 in order, then
    sums l + L + 2L + 3L per lane; the result is 0 + the n % L terms left, in order, + lane
    0, ..., + lane L-1 (_finish, one lane extracted at a time as a masked sum, exact).
  - A group mean sums the members (in channel order) per column as torch's reduction over
    dim 0 does, then divides by the count (_group_mean_kernel): columns [0, Ns) (Ns =
    N - N % 4L, or N - N % 4 for N < L) add the members one by one into one cascaded chain
    (ROW = 1); the N - Ns other columns add them four at a time (member r into sum r % 4,
    rows of four cascaded, the count % 4 last members into sum 0 after the levels, then sum
    0 + 1 + 2 + 3; ROW = 4); a 1-value map (N = 1) sums each group's member values as one
    row of torch's sum (above, L from the group's count; ROW = 4, LANES = L).
  - The shift: per group sqrt of its medoid's move (a distance above), then the K shifts
    summed as one row of K values (_vector_torch_sum).
Every add, subtract and multiply rounds on its own (launched with enable_fp_fusion=False, so
that a compiled kernel fuses no FMA: the C++ kernel's fp-contract=off); divisions and square
roots round as IEEE (_div, _sqrt), as on the CPU.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

# One pinned config per mode: autotuning needs a GPU, and the interpreter runs ~1 ms per
# program. Distance tiles: BLOCK_C channels x BLOCK_K vectors x 4L lanes, four cascade levels.
BLOCK_C = 16
BLOCK_K = 4
BLOCK_N = 64      # columns of a group mean per program
COUNT_BLOCK = 64  # channels per step when counting the group members
NUM_WARPS = 4
# Under the interpreter (CPU tensors) an operation costs about the same at any width, and
# every operation and jit-function call costs: there tiles span up to these many channels
# and mean columns (same kernels, fewer and wider programs).
INTERPRETED_BLOCK_C = 256
INTERPRETED_BLOCK_N = 4096
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
def _level_power(rows):
    """Elementwise block exponent of torch's multi_row_sum over `rows` rows (int32):
    max(4, ceil_log2(rows) / 4), ceil_log2 = 1 for rows <= 2 (the bit length of rows - 1)."""
    v = tl.maximum(rows - 1, 0)
    bits = tl.zeros_like(rows)
    for s in tl.static_range(5):  # binary search of the highest bit: shifts 16, 8, 4, 2, 1
        high = (v >> (16 >> s)) > 0
        v = tl.where(high, v >> (16 >> s), v)
        bits += tl.where(high, 16 >> s, 0)
    bits += v  # (v is now 0 or 1)
    return tl.maximum(tl.where(rows <= 2, 1, bits) // 4, 4)


@triton.jit
def _cascade(acc0, acc1, acc2, acc3, i, lp, due):
    """torch's multi_row_sum after its row i (1-based) where `due` (broadcast to the
    accumulators; true where i ends a block of 2^lp rows): level 0 goes into level 1, level 1
    into level 2 once 2^lp blocks filled it, level 2 into level 3 likewise."""
    m = (1 << lp) - 1
    up2 = due & ((i & (m << lp)) == 0)
    up3 = up2 & ((i & (m << (2 * lp))) == 0)
    acc1 = tl.where(due, acc1 + acc0, acc1)
    acc0 = tl.where(due, 0.0, acc0)
    acc2 = tl.where(up2, acc2 + acc1, acc2)
    acc1 = tl.where(up2, 0.0, acc1)
    acc3 = tl.where(up3, acc3 + acc2, acc3)
    acc2 = tl.where(up3, 0.0, acc2)
    return acc0, acc1, acc2, acc3


@triton.jit
def _finish(acc0, acc1, acc2, acc3, rest, n_rest, R: tl.constexpr, V: tl.constexpr,
            L: tl.constexpr):
    """[R, V] totals of torch's row sums of terms >= 0 from their cascade levels acc0..acc3
    [R, V, 4L] and the terms of the partial row, rest [R, V, 4L] (the first n_rest < 4L
    valid, the others 0): levels 0 + 1 + 2 + 3; the whole vectors of L left into sums
    0..L-1; sums l + L + 2L + 3L; then 0 + the n_rest % L terms left + lane 0 + ... + lane
    L-1. Chunks and lanes are picked by masked sums (exact), and absent vectors or tail
    values add +0 (exact, the terms being >= 0), so no step depends on n_rest."""
    W: tl.constexpr = 4 * L
    e = tl.arange(0, W)[None, None, :]
    vec_end = (n_rest // L) * L  # the whole vectors end here, the tail follows
    s = tl.reshape(((acc0 + acc1) + acc2) + acc3, [R, V, 4, L])
    whole = tl.reshape(tl.where(e < vec_end, rest, 0.0), [R, V, 4, L])
    # The tail lies in one chunk from its lane 0: the sum over chunks adds zeros to it.
    tail = tl.sum(tl.reshape(tl.where(e < vec_end, 0.0, rest), [R, V, 4, L]), axis=2)
    chunk = tl.arange(0, 4)[None, None, :, None]
    lanes = tl.sum(tl.where(chunk == 0, s, 0.0), axis=2)
    for t in tl.static_range(3):
        lanes = lanes + tl.sum(tl.where(chunk == t, whole, 0.0), axis=2)
    for k in tl.static_range(1, 4):
        lanes = lanes + tl.sum(tl.where(chunk == k, s, 0.0), axis=2)
    lane = tl.arange(0, L)[None, None, :]
    total = tl.zeros([R, V], dtype=acc0.dtype)
    for t in tl.static_range(L - 1):
        total = total + tl.sum(tl.where(lane == t, tail, 0.0), axis=2)
    for j in tl.static_range(L):
        total = total + tl.sum(tl.where(lane == j, lanes, 0.0), axis=2)
    return total


@triton.jit
def _sq_dist_sums(x_ptr, xrow, xm, y_ptr, yrow, ym, n, n_end, lp, R: tl.constexpr,
                  V: tl.constexpr, L: tl.constexpr):
    """[R, V] squared distances sum_i (x[xrow + i] - y[yrow + i])^2 over i < n, each summed as
    torch's sum of its row of terms (module doc; L lanes, lp = _level_power(n // 4L)): the
    paper's pairwise_distance, difference first (km_sq_term), so ties round as there.
    xrow/xm broadcast to [R, V] (e.g. [R, 1] rows against [1, V] vectors, or [R, 1] against
    [R, 1]: pairs); n_end = 0 (a converged sample) reads nothing."""
    W: tl.constexpr = 4 * L
    e = tl.arange(0, W)[None, None, :]
    xp = x_ptr + xrow[:, :, None] + e
    yp = y_ptr + yrow[:, :, None] + e
    xmask = xm[:, :, None] & (e < W)  # (the row masks broadcast to the tiles)
    ymask = ym[:, :, None] & (e < W)
    acc0 = tl.zeros([R, V, W], dtype=x_ptr.dtype.element_ty)
    acc1 = tl.zeros([R, V, W], dtype=x_ptr.dtype.element_ty)
    acc2 = tl.zeros([R, V, W], dtype=x_ptr.dtype.element_ty)
    acc3 = tl.zeros([R, V, W], dtype=x_ptr.dtype.element_ty)
    rows = n_end // W
    offset = 0
    for blk in range(0, rows >> lp):  # full rows in blocks of 2^lp, then the cascade
        for j in range(0, 1 << lp):
            xv = tl.load(xp + offset, mask=xmask, other=0.0)
            yv = tl.load(yp + offset, mask=ymask, other=0.0)
            diff = xv - yv  # km_sq_term: difference, then square
            acc0 += diff * diff
            offset += W
        acc0, acc1, acc2, acc3 = _cascade(acc0, acc1, acc2, acc3, (blk + 1) << lp, lp,
                                          lp >= 0)  # (due everywhere)
    for j in range((rows >> lp) << lp, rows):  # the rows after the last full block
        xv = tl.load(xp + offset, mask=xmask, other=0.0)
        yv = tl.load(yp + offset, mask=ymask, other=0.0)
        diff = xv - yv
        acc0 += diff * diff
        offset += W
    full = (n // W) * W
    inside = full + e < n_end  # (nothing read for a converged sample: its rows may be stale)
    xv = tl.load(xp + full, mask=xmask & inside, other=0.0)
    yv = tl.load(yp + full, mask=ymask & inside, other=0.0)
    diff = xv - yv
    rest = tl.where(inside, diff * diff, 0.0)
    return _finish(acc0, acc1, acc2, acc3, rest, n - full, R, V, L)


@triton.jit
def _vector_torch_sum(v, count, lp, GROUPS: tl.constexpr, L: tl.constexpr):
    """torch's sum of the row v[0..count) (v [GROUPS]; L lanes, lp = _level_power(count //
    4L)): the order of _sq_dist_sums, each row gathered by masked sums (exact)."""
    W: tl.constexpr = 4 * L
    kk = tl.arange(0, GROUPS)[None, :]
    e = tl.arange(0, W)[:, None]
    v = tl.where(kk < count, v[None, :], 0.0)
    acc0 = tl.zeros([1, 1, W], dtype=v.dtype)
    acc1 = tl.zeros([1, 1, W], dtype=v.dtype)
    acc2 = tl.zeros([1, 1, W], dtype=v.dtype)
    acc3 = tl.zeros([1, 1, W], dtype=v.dtype)
    block = (1 << lp) - 1
    for q in range(0, count // W):
        acc0 += tl.sum(tl.where(kk == q * W + e, v, 0.0), axis=1)[None, None, :]
        if ((q + 1) & block) == 0:
            acc0, acc1, acc2, acc3 = _cascade(acc0, acc1, acc2, acc3, q + 1, lp,
                                              ((q + 1) & block) == 0)
    full = (count // W) * W
    rest = tl.sum(tl.where(kk == full + e, v, 0.0), axis=1)[None, None, :]
    total = _finish(acc0, acc1, acc2, acc3, rest, count - full, 1, 1, L)
    return tl.sum(tl.sum(total, axis=1), axis=0)


@triton.jit
def _assign_kernel(a_ptr, mind_ptr, x_ptr, med_ptr, done_ptr, channels, n, groups, lp,
                   L: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    cm = c < channels
    live = tl.load(done_ptr + b) == 0
    n_end = tl.where(live, n, 0)
    row = b * channels + c
    best_v = tl.full([BLOCK_C], float("inf"), dtype=x_ptr.dtype.element_ty)
    best_i = tl.full([BLOCK_C], NONE, dtype=tl.int32)
    for k0 in range(0, tl.where(live, groups, 0), BLOCK_K):
        k = k0 + tl.arange(0, BLOCK_K)
        km = k < groups
        med = tl.load(med_ptr + b * groups + k, mask=km, other=0)
        d = _sq_dist_sums(x_ptr, (row * n)[:, None], cm[:, None], x_ptr,
                          ((b * channels + med) * n)[None, :], km[None, :], n, n_end, lp,
                          BLOCK_C, BLOCK_K, L)
        d = tl.where(km[None, :], d, float("inf"))
        v, i = _argmin(d, k[None, :], 1)
        best_v, best_i = _merge(best_v, best_i, v, i)
    tl.store(a_ptr + row, best_i.to(tl.int64), mask=cm & live)
    tl.store(mind_ptr + row, best_v, mask=cm & live)


@triton.jit
def _group_mean_kernel(mean_ptr, cnt_ptr, x_ptr, a_ptr, done_ptr, channels, n, col_start,
                       col_end, groups, GROUPS: tl.constexpr, ROW: tl.constexpr,
                       LANES: tl.constexpr, FIXED_LP: tl.constexpr, BLOCK_N: tl.constexpr,
                       BLOCK_C: tl.constexpr):
    """Columns [col_start, col_end) of every group's mean (sum of its members in channel
    order / count) and every group's count, summed as torch's x[members].mean(dim=0) (module
    doc): per group, L = LANES lanes (1 where its count < LANES) and rows of ROW * L members;
    member r of a group adds into sum r % (ROW L) of its row's level 0 (full rows), into sum
    (r - full) % L of the combined levels (the whole vectors after them) or into the tail
    (the rest, in order); at the end, sums l + L + ... + (ROW - 1) L per lane, and
    0 + tail + lane 0 + ... + lane L-1. One program per (sample, column block), all groups at
    once (a member's row goes to its group's sums through a one-hot mask: adding nothing to
    the others). FIXED_LP > 0: every group's block exponent (the host knows it from C),
    else computed per group."""
    b = tl.program_id(0).to(tl.int64)
    cols = col_start + tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    colm = cols < col_end
    live = tl.load(done_ptr + b) == 0
    c_end = tl.where(live, channels, 0)
    kk = tl.arange(0, GROUPS)
    ty = x_ptr.dtype.element_ty
    cnt = tl.zeros([GROUPS], dtype=tl.int32)
    for c0 in range(0, c_end, BLOCK_C):
        c = c0 + tl.arange(0, BLOCK_C)
        lab = tl.load(a_ptr + b * channels + c, mask=c < channels, other=-1)
        cnt += tl.sum(tl.where(lab[None, :] == kk[:, None], 1, 0), axis=1)
    lanes = tl.where(cnt >= LANES, LANES, 1)
    width = ROW * lanes
    full = (cnt // width) * width   # members in full rows
    whole = (cnt // lanes) * lanes  # members in whole vectors (the rest: tail)
    if FIXED_LP > 0:
        lp = tl.full([GROUPS], FIXED_LP, dtype=tl.int32)
    else:
        lp = _level_power(cnt // width)
    block = (1 << lp) - 1
    slot = tl.arange(0, ROW * LANES)[None, :, None]
    acc0 = tl.zeros([GROUPS, ROW * LANES, BLOCK_N], dtype=ty)
    acc1 = tl.zeros([GROUPS, ROW * LANES, BLOCK_N], dtype=ty)
    acc2 = tl.zeros([GROUPS, ROW * LANES, BLOCK_N], dtype=ty)
    acc3 = tl.zeros([GROUPS, ROW * LANES, BLOCK_N], dtype=ty)
    tail = tl.zeros([GROUPS, BLOCK_N], dtype=ty)
    rank = tl.zeros([GROUPS], dtype=tl.int32)  # members of each group seen so far
    for c in range(0, c_end):
        sel = kk == tl.load(a_ptr + b * channels + c)
        xrow = tl.load(x_ptr + (b * channels + c) * n + cols, mask=colm, other=0.0)
        xv = xrow[None, None, :]
        if ROW * LANES == 1:  # member by member: one chain per column, a row per member
            acc0 = tl.where(sel[:, None, None], acc0 + xv, acc0)
            rows = rank + 1
            due = sel & ((rows & block) == 0)
        else:
            if tl.max((sel & (rank == full)).to(tl.int32), axis=0) > 0:
                # its group's full rows are done: their levels combine (before the vectors)
                m3 = sel[:, None, None]
                acc0 = tl.where(m3, ((acc0 + acc1) + acc2) + acc3, acc0)
                acc1 = tl.where(m3, 0.0, acc1)
                acc2 = tl.where(m3, 0.0, acc2)
                acc3 = tl.where(m3, 0.0, acc3)
            target = tl.where(rank < full, rank % width, (rank - full) % lanes)
            put = (sel & (rank < whole))[:, None, None] & (slot == target[:, None, None])
            acc0 = tl.where(put, acc0 + xv, acc0)
            if LANES > 1:
                tail = tl.where((sel & (rank >= whole))[:, None], tail + xrow[None, :], tail)
            rows = (rank + 1) // width
            due = sel & (rank < full) & ((rank + 1) % width == 0) & ((rows & block) == 0)
        if tl.max(due.to(tl.int32), axis=0) > 0:  # a block of 2^lp rows ended: cascade
            acc0, acc1, acc2, acc3 = _cascade(acc0, acc1, acc2, acc3, rows[:, None, None],
                                              lp[:, None, None], due[:, None, None])
        rank += sel.to(tl.int32)
    acc0 = ((acc0 + acc1) + acc2) + acc3  # (groups combined above add zeros)
    total = tail
    for j in tl.static_range(LANES):
        lane = tl.zeros([GROUPS, BLOCK_N], dtype=ty)
        for k in tl.static_range(ROW):
            pick = slot == (k * lanes + j)[:, None, None]
            part = tl.sum(tl.where(pick, acc0, 0.0), axis=1)
            lane = part if k == 0 else lane + part
        total = tl.where((lanes > j)[:, None], total + lane, total)
    mean = _div(total, tl.maximum(cnt, 1).to(ty)[:, None])
    km = kk < groups
    tl.store(mean_ptr + (b * groups + kk)[:, None] * n + cols[None, :], mean,
             mask=km[:, None] & colm[None, :] & live)
    tl.store(cnt_ptr + b * groups + kk, cnt.to(ty), mask=km & live & (tl.program_id(1) == 0))


@triton.jit
def _snap_key_kernel(key_ptr, x_ptr, mean_ptr, cnt_ptr, mind_ptr, done_ptr, channels, n,
                     groups, lp, FARTHEST: tl.constexpr, L: tl.constexpr,
                     BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    k = tl.program_id(2) * BLOCK_K + tl.arange(0, BLOCK_K)
    cm = c < channels
    km = k < groups
    live = tl.load(done_ptr + b) == 0
    row = b * channels + c
    cnt = tl.load(cnt_ptr + b * groups + k, mask=km, other=0.0)
    key = _sq_dist_sums(x_ptr, (row * n)[:, None], cm[:, None], mean_ptr,
                        ((b * groups + k) * n)[None, :], km[None, :], n, tl.where(live, n, 0),
                        lp, BLOCK_C, BLOCK_K, L)
    mind = tl.load(mind_ptr + row, mask=cm, other=0.0)
    if FARTHEST:  # empty group: re-seed at the free channel farthest from its medoid
        key = tl.where(cnt[None, :] > 0, key, -mind[:, None])
    else:  # empty group: equal keys, the first free channel (the paper's NaN mean)
        key = tl.where(cnt[None, :] > 0, key, 0.0)
    tl.store(key_ptr + (b * groups + k)[None, :] * channels + c[:, None], key,
             mask=cm[:, None] & km[None, :] & live)


@triton.jit
def _snap_kernel(med_ptr, it_ptr, done_ptr, key_ptr, x_ptr, thr_ptr, channels, n, groups,
                 lp, shift_lp, GROUPS: tl.constexpr, L: tl.constexpr, SHIFT_L: tl.constexpr,
                 BLOCK_C: tl.constexpr):
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
    # (As the paper's torch.sum(torch.sqrt(torch.sum((new - old) ** 2, dim=1))).)
    moved = _sq_dist_sums(x_ptr, ((b * channels + new) * n)[:, None], km[:, None], x_ptr,
                          ((b * channels + old) * n)[:, None], km[:, None], n,
                          tl.where(live, n, 0), lp, GROUPS, 1, L)
    shifts = _sqrt(tl.sum(moved, axis=1))  # (a sum of one value)
    shift = _vector_torch_sum(shifts, groups, shift_lp, GROUPS, SHIFT_L)
    converged = shift * shift < tl.load(thr_ptr)
    tl.store(med_ptr + b * groups + kk, new.to(tl.int64), mask=km & live)
    tl.store(it_ptr + b, tl.load(it_ptr + b) + 1, mask=live)
    tl.store(done_ptr + b, converged.to(tl.int32), mask=live)


def _level_power_host(rows: int) -> int:
    """_level_power of one row count, on the host."""
    return max(4, (1 if rows <= 2 else (rows - 1).bit_length()) // 4)


def _mean_launches(n: int, lanes: int, block_n: int) -> list[tuple[int, int, int, int, int]]:
    """(ROW, LANES, first column, end column, BLOCK_N) of each _group_mean_kernel launch of an
    n-value map (lanes: torch's L): the member-by-member columns, then the four-at-a-time ones
    (seq_columns of csrc/cpu/channel_kmeans.cpp; block_n columns per program), or the one
    column of a 1-value map."""
    if n == 1:
        return [(4, lanes, 0, 1, 1)]
    block = 4 * lanes if n >= lanes else 4
    ns = (n // block) * block
    out = []
    if ns:
        out.append((1, 1, 0, ns, min(block_n, triton.next_power_of_2(ns))))
    if ns < n:
        out.append((4, 1, ns, n, triton.next_power_of_2(n - ns)))
    return out


def channel_kmeans_triton(x: torch.Tensor, init: torch.Tensor, max_iter: int,
                          shift_threshold: float, reseed_farthest: bool = False
                          ) -> tuple[torch.Tensor, ...]:
    """k-means of the channels of x (B, C, N) from the medoids init (B, K); see the module doc."""
    b, c, n = x.shape
    k = init.shape[1]
    dev, dt = x.device, x.dtype
    medoids = init.clone()
    assignment = torch.zeros(b, c, dtype=torch.int64, device=dev)
    iterations = torch.zeros(b, dtype=torch.int64, device=dev)
    done = torch.zeros(b, dtype=torch.int32, device=dev)
    mind = torch.empty(b, c, dtype=dt, device=dev)
    means = torch.empty(b, k, n, dtype=dt, device=dev)
    counts = torch.empty(b, k, dtype=dt, device=dev)
    keys = torch.empty(b, k, c, dtype=dt, device=dev)
    # The reference compares shift^2 < threshold in the features' dtype.
    thr = torch.full((1,), float(shift_threshold), dtype=dt, device=dev)
    groups = triton.next_power_of_2(k)
    # torch's lanes (32 bytes) and block exponents of the rows summed: n terms, K shifts.
    lanes = 32 // x.element_size()
    dist_l = lanes if n >= lanes else 1
    shift_l = lanes if k >= lanes else 1
    lp = _level_power_host(n // (4 * dist_l))
    shift_lp = _level_power_host(k // (4 * shift_l))
    interpreted = dev.type == "cpu"
    block_c = min(INTERPRETED_BLOCK_C, triton.next_power_of_2(c)) if interpreted else BLOCK_C
    mean_launches = _mean_launches(n, lanes, INTERPRETED_BLOCK_N if interpreted else BLOCK_N)
    # A group of at most C members: the block exponent of its rows is 4 unless C > 2^19.
    mean_lp = 4 if _level_power_host(c) == 4 else 0
    grid = (b, triton.cdiv(c, block_c))
    # Every add and multiply rounds on its own, as the C++ kernel's (no FMA contraction).
    exact = dict(num_warps=NUM_WARPS, enable_fp_fusion=False)
    for _ in range(max_iter):
        # CPU tensors (the interpreter): reading the flags costs no synchronisation, and the
        # launches left would only find converged samples.
        if interpreted and bool(done.all()):
            break
        _assign_kernel[grid](assignment, mind, x, medoids, done, c, n, k, lp, L=dist_l,
                             BLOCK_C=block_c, BLOCK_K=BLOCK_K, **exact)
        for row, mean_lanes, start, end, block_n in mean_launches:
            _group_mean_kernel[(b, triton.cdiv(end - start, block_n))](
                means, counts, x, assignment, done, c, n, start, end, k, GROUPS=groups,
                ROW=row, LANES=mean_lanes, FIXED_LP=mean_lp, BLOCK_N=block_n,
                BLOCK_C=COUNT_BLOCK, **exact)
        _snap_key_kernel[grid + (triton.cdiv(k, BLOCK_K),)](
            keys, x, means, counts, mind, done, c, n, k, lp, FARTHEST=reseed_farthest,
            L=dist_l, BLOCK_C=block_c, BLOCK_K=BLOCK_K, **exact)
        _snap_kernel[(b,)](medoids, iterations, done, keys, x, thr, c, n, k, lp, shift_lp,
                           GROUPS=groups, L=dist_l, SHIFT_L=shift_l, BLOCK_C=block_c, **exact)
    return assignment, medoids, iterations
