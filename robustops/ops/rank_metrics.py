"""rank_metrics: top-k intersection, Kendall tau-b and Spearman rho of batches of map pairs.

The attribution-robustness metrics of METHODS.md section 5, for B pairs of maps
(a[r], b[r]) flattened to N values each, computed on the tensors' device:

- top-k intersection: |TopK(a) n TopK(b)| / k (ties at the k-th value go to the
  lower index, as a stable descending sort);
- Kendall tau-b (ties handled, scipy.stats.kendalltau's default);
- Spearman rho: Pearson correlation of average ranks (scipy.stats.spearmanr).

A pair whose a or b is constant has no defined correlation: NaN, as in scipy.

Backends: ``cpp`` (CPU tensors) runs csrc/cpu/rank_metrics.cpp, which radix-sorts
each row (O(N) sorts on order-preserving integer keys) and counts discordant pairs
by merge sort, rows in parallel; ``triton`` (robustops/triton/rank_metrics.py) is
what CUDA tensors run under ``auto`` when Triton is installed: one stable torch.sort
of the stacked rows, then kernels for the average ranks and top-k membership
(binary searches for the tie runs in the sorted rows), an exact tiled O(N^2)
concordant-minus-discordant count (fine up to ~16K values, 128x128 maps) and the
float64 formulas; ``reference`` is batched plain PyTorch (segmented sorts and a
merge-sort inversion count with searchsorted, O(N log^2 N)), on any device (CUDA
tensors without Triton run it). The metrics are not on a training path, so there
are no gradients: these are evaluation metrics.
"""
from __future__ import annotations

import math
from typing import Dict

import torch
from torch import Tensor

from .. import backend

__all__ = ["rank_metrics", "topk_intersection", "kendall_tau", "spearman_rho",
           "rank_metrics_reference"]

OP = "rank_metrics"
BACKENDS = ("reference", "cpp", "triton")


# ----------------------------------------------------------------------------- reference


def _runs(sorted_vals: Tensor, same_as_prev: Tensor):
    """Run starts / ends (inclusive) per position of rows sorted so that ties are adjacent.

    same_as_prev: (B, n) bool, True where element j equals element j - 1 (False at 0).
    """
    b, n = sorted_vals.shape
    pos = torch.arange(n, device=sorted_vals.device).expand(b, n)
    start = torch.where(~same_as_prev, pos, torch.zeros_like(pos)).cummax(1).values
    is_last = torch.ones_like(same_as_prev)
    is_last[:, :-1] = ~same_as_prev[:, 1:]
    end = torch.where(is_last, pos, torch.full_like(pos, n)).flip(1).cummin(1).values.flip(1)
    return pos, start, end


def _ranks(v: Tensor):
    """(average 1-based ranks (B, n) float64, dense ranks (B, n) int64, tied pairs (B,))."""
    sv, idx = torch.sort(v, dim=1, stable=True)
    same = torch.zeros_like(sv, dtype=torch.bool)
    same[:, 1:] = sv[:, 1:] == sv[:, :-1]
    pos, start, end = _runs(sv, same)
    avg = (start + end).to(torch.float64) / 2 + 1
    dense = (~same).cumsum(1) - 1
    ties = (pos - start).sum(1).to(torch.float64)  # sum over runs of t(t-1)/2
    return (torch.empty_like(avg).scatter_(1, idx, avg),
            torch.empty_like(dense).scatter_(1, idx, dense), ties)


def _inversions(seq: Tensor) -> Tensor:
    """Strict inversions (i < j, seq_i > seq_j) per row of an int64 (B, n) tensor.

    Bottom-up merge sort: at width w, every element of a right block counts the
    elements of its left block that are larger (searchsorted on the sorted left
    block), then each block pair is sorted for the next level.
    """
    b, n = seq.shape
    size = 1 << max(0, (n - 1).bit_length())
    if size > n:  # pad with a value above every rank, at the end: adds no inversion
        seq = torch.cat([seq, seq.new_full((b, size - n), n)], 1)
    inv = torch.zeros(b, dtype=torch.int64, device=seq.device)
    width = 1
    while width < size:
        blocks = seq.reshape(b, size // (2 * width), 2, width)
        left = blocks[:, :, 0].reshape(-1, width).contiguous()
        right = blocks[:, :, 1].reshape(-1, width).contiguous()
        larger = width - torch.searchsorted(left, right, right=True)
        inv += larger.reshape(b, -1).sum(1)
        seq = torch.sort(blocks.reshape(b, -1, 2 * width), dim=-1).values.reshape(b, size)
        width *= 2
    return inv


def rank_metrics_reference(a: Tensor, b: Tensor, k: int) -> Tensor:
    """Plain-PyTorch rank metrics of (B, N) rows: (B, 3) float64 [top-k, tau-b, rho]."""
    rows, n = a.shape
    dev = a.device
    # Top-k: stable descending sorts, so ties at the boundary take the lower index.
    ta = torch.sort(a, dim=1, descending=True, stable=True).indices[:, :k]
    tb = torch.sort(b, dim=1, descending=True, stable=True).indices[:, :k]
    mark = torch.zeros(rows, n, dtype=torch.bool, device=dev).scatter_(1, tb, True)
    topk = mark.gather(1, ta).sum(1).to(torch.float64) / k

    avg_a, dense_a, ties_a = _ranks(a)
    avg_b, dense_b, ties_b = _ranks(b)
    # Lexicographic (a, b) order: stable sort by b, then stable sort by a.
    ob = torch.sort(dense_b, dim=1, stable=True).indices
    lex = ob.gather(1, torch.sort(dense_a.gather(1, ob), dim=1, stable=True).indices)
    la, lb = dense_a.gather(1, lex), dense_b.gather(1, lex)
    same = torch.zeros_like(la, dtype=torch.bool)
    same[:, 1:] = (la[:, 1:] == la[:, :-1]) & (lb[:, 1:] == lb[:, :-1])
    pos, start, _ = _runs(la, same)
    ties_ab = (pos - start).sum(1).to(torch.float64)
    disc = _inversions(lb).to(torch.float64)
    n0 = n * (n - 1) / 2
    tau = (n0 - ties_a - ties_b + ties_ab - 2 * disc) / torch.sqrt((n0 - ties_a) * (n0 - ties_b))

    mean = (n + 1) / 2
    da, db = avg_a - mean, avg_b - mean
    rho = (da * db).sum(1) / torch.sqrt((da * da).sum(1) * (db * db).sum(1))
    return torch.stack([topk, tau, rho], 1)


# ----------------------------------------------------------------------------- public API


def _prepare(a: Tensor, b: Tensor, k, need_k: bool, fn: str):
    for name, t in (("a", a), ("b", b)):
        if not isinstance(t, Tensor):
            raise ValueError(f"{fn}: {name} must be a tensor, got {type(t).__name__}")
        if t.is_complex() or t.dtype == torch.bool:
            raise ValueError(f"{fn}: {name} must be real-valued, got {t.dtype}")
        if t.ndim < 2:
            raise ValueError(f"{fn}: {name} must be (B, *) maps (a batch of maps; use "
                             f"{name}[None] for one pair), got shape {tuple(t.shape)}")
    if a.shape != b.shape:
        raise ValueError(f"{fn}: a {tuple(a.shape)} and b {tuple(b.shape)} must have one shape")
    if a.device != b.device:
        raise ValueError(f"{fn}: a is on {a.device} but b is on {b.device}")
    n = math.prod(a.shape[1:])
    a2, b2 = a.detach().reshape(a.shape[0], n), b.detach().reshape(b.shape[0], n)
    if n == 0:
        raise ValueError(f"{fn}: the maps are empty (shape {tuple(a.shape)})")
    if need_k:
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
            raise ValueError(f"{fn}: k must be an int in [1, {n}] (the map size), got {k!r}")
    # One floating dtype: float64 if either is float64 (or an integer type), else float32.
    dt = torch.float64 if torch.float64 in (a2.dtype, b2.dtype) or not a2.is_floating_point() \
        or not b2.is_floating_point() else torch.float32
    return a2.to(dt), b2.to(dt)


def _nan_error(fn: str) -> ValueError:
    return ValueError(f"{fn}: the maps contain NaN; rank metrics need ordered values")


def _compute(a2: Tensor, b2: Tensor, k: int, fn: str) -> Tensor:
    if a2.shape[0] == 0:
        return torch.empty(0, 3, dtype=torch.float64, device=a2.device)
    name = backend.resolve(a2.device, OP, BACKENDS)
    if name != "cpp" and bool(torch.isnan(a2).any() | torch.isnan(b2).any()):
        raise _nan_error(fn)
    if name == "reference":
        return rank_metrics_reference(a2, b2, k)
    if name == "triton":
        from ..triton.rank_metrics import rank_metrics_triton
        out = torch.empty(a2.shape[0], 3, dtype=torch.float64, device=a2.device)
        rank_metrics_triton(out, a2.contiguous(), b2.contiguous(), k)
        return out
    out = torch.empty(a2.shape[0], 3, dtype=torch.float64)
    # The kernel sees every value while building its sort keys and reports NaN itself.
    if backend.extension().rank_metrics(out, a2.contiguous(), b2.contiguous(), k):
        raise _nan_error(fn)
    return out


def rank_metrics(a: Tensor, b: Tensor, k: int) -> Dict[str, Tensor]:
    """All three metrics of B map pairs in one pass (the sorts are shared).

    a, b: (B, *) real maps of one shape (each row flattened to N values), no NaN;
    k: int in [1, N]. Returns {"topk": (B,), "kendall": (B,), "spearman": (B,)}, float64
    on a's device.
    """
    a2, b2 = _prepare(a, b, k, True, "rank_metrics")
    out = _compute(a2, b2, k, "rank_metrics")
    return {"topk": out[:, 0], "kendall": out[:, 1], "spearman": out[:, 2]}


def topk_intersection(a: Tensor, b: Tensor, k: int) -> Tensor:
    """(B,) float64: |TopK(a) n TopK(b)| / k per pair (a, b: (B, *), k in [1, N])."""
    a2, b2 = _prepare(a, b, k, True, "topk_intersection")
    return _compute(a2, b2, k, "topk_intersection")[:, 0]


def kendall_tau(a: Tensor, b: Tensor) -> Tensor:
    """(B,) float64: Kendall tau-b per pair (ties handled; NaN for a constant map)."""
    a2, b2 = _prepare(a, b, None, False, "kendall_tau")
    return _compute(a2, b2, 1, "kendall_tau")[:, 1]


def spearman_rho(a: Tensor, b: Tensor) -> Tensor:
    """(B,) float64: Spearman rho per pair (average ranks for ties; NaN for a constant map)."""
    a2, b2 = _prepare(a, b, None, False, "spearman_rho")
    return _compute(a2, b2, 1, "spearman_rho")[:, 2]
