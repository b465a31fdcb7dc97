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
tensors without Triton run it). There is no ``cuda`` backend: the op has no CUDA
kernel. The metrics are not on a training path, so there are no gradients: these are
evaluation metrics.

Layers: the op ``robustops::rank_metrics(a, b, k) -> (topk, kendall, spearman)`` is
declared in C++ (csrc/ops/rank_metrics.cpp, with its argument checks, the flattening and
dtype choice, and its autograd kernel, which runs the kernel below autograd) and runs the
CPU kernel registered in csrc/cpu/rank_metrics.cpp (no CUDA registration: a CUDA tensor
given to the op itself gets the dispatcher's "no kernel for CUDA" error). This file holds
the public functions (one call of the op on the CPU), the fake kernel, the reference and
the Triton backend as ``robustops::rank_metrics_triton``.
"""
from __future__ import annotations

import math
from typing import Dict

import torch
from torch import Tensor
from torch.compiler import is_compiling

from ..arguments import require_int, require_tensor
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


# ----------------------------------------------------------------------------- python checks


def _check(a, b, k, need_k: bool, fn: str) -> int:
    """The checks of csrc/ops/rank_metrics.cpp (same messages, `fn` naming the function);
    returns N, the values per map."""
    for name, t in (("a", a), ("b", b)):
        require_tensor(fn, name, t)
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
    if n == 0:
        raise ValueError(f"{fn}: the maps are empty (shape {tuple(a.shape)})")
    if need_k:
        require_int(k, "k", where=fn, minimum=1, maximum=n,
                    what=f"an int in [1, {n}] (the map size)")
    return n


def _prepare(a: Tensor, b: Tensor, k, need_k: bool, fn: str):
    """(a, b) checked, detached, as (B, N) rows of one floating dtype: float64 if either is
    float64 (or an integer type), else float32 (what the op does in C++)."""
    n = _check(a, b, k, need_k, fn)
    a2, b2 = a.detach().reshape(a.shape[0], n), b.detach().reshape(b.shape[0], n)
    dt = torch.float64 if torch.float64 in (a2.dtype, b2.dtype) or not a2.is_floating_point() \
        or not b2.is_floating_point() else torch.float32
    return a2.to(dt), b2.to(dt)


def _nan_error(fn: str) -> ValueError:
    return ValueError(f"{fn}: the maps contain NaN; rank metrics need ordered values")


# ----------------------------------------------------------------------------- fake kernel


def _fake(a, b, k):
    _check(a, b, k, True, "rank_metrics")
    rows = a.shape[0]
    return tuple(a.new_empty((rows,), dtype=torch.float64) for _ in range(3))


_OP, _OP_EAGER = backend.native_op("rank_metrics", {"rank_metrics": _fake})


# ----------------------------------------------------------------------------- triton backend


@torch.library.custom_op("robustops::rank_metrics_triton", mutates_args=())
def _rank_metrics_triton(a: Tensor, b: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """The Triton kernels on prepared (B, N) rows (B > 0, no NaN)."""
    from ..triton.rank_metrics import rank_metrics_triton
    out = torch.empty(a.shape[0], 3, dtype=torch.float64, device=a.device)
    rank_metrics_triton(out, a.contiguous(), b.contiguous(), k)
    return out[:, 0].clone(), out[:, 1].clone(), out[:, 2].clone()


@_rank_metrics_triton.register_fake
def _(a, b, k):
    return tuple(a.new_empty((a.shape[0],), dtype=torch.float64) for _ in range(3))


# ----------------------------------------------------------------------------- public API


def _compute(a: Tensor, b: Tensor, k: int, fn: str) -> tuple[Tensor, Tensor, Tensor]:
    """(topk, kendall, spearman), each (B,) float64, of maps that passed _check."""
    name = backend.python_path(a, OP, BACKENDS)
    if name is None:
        try:
            return (_OP if is_compiling() else _OP_EAGER)(a, b, k)
        except ValueError as exc:  # the op names itself; name the function called
            raise ValueError(str(exc).replace("rank_metrics:", f"{fn}:", 1)) from None
    a2, b2 = _prepare(a, b, k, True, fn)
    if a2.shape[0] == 0:
        return tuple(torch.empty(0, dtype=torch.float64, device=a2.device) for _ in range(3))
    # (Not while torch.compile traces this path: a data-dependent branch.)
    if not is_compiling() and bool(torch.isnan(a2).any() | torch.isnan(b2).any()):
        raise _nan_error(fn)
    if name == "triton":
        return _rank_metrics_triton(a2, b2, k)
    return rank_metrics_reference(a2, b2, k).unbind(1)


def rank_metrics(a: Tensor, b: Tensor, k: int) -> Dict[str, Tensor]:
    """All three metrics of B map pairs in one pass (the sorts are shared).

    a, b: (B, *) real maps of one shape (each row flattened to N values), no NaN;
    k: int in [1, N]. Returns {"topk": (B,), "kendall": (B,), "spearman": (B,)}, float64
    on a's device.
    """
    if type(k) is not int:
        _check(a, b, k, True, "rank_metrics")  # e.g. a float or bool k
    try:
        name = backend.python_path(a, OP, BACKENDS)
        if name is None:
            topk, tau, rho = (_OP if is_compiling() else _OP_EAGER)(a, b, k)
            return {"topk": topk, "kendall": tau, "spearman": rho}
    except (TypeError, AttributeError, RuntimeError):
        _check(a, b, k, True, "rank_metrics")  # clearer messages
        raise
    topk, tau, rho = _compute(a, b, k, "rank_metrics")
    return {"topk": topk, "kendall": tau, "spearman": rho}


def topk_intersection(a: Tensor, b: Tensor, k: int) -> Tensor:
    """(B,) float64: |TopK(a) n TopK(b)| / k per pair (a, b: (B, *), k in [1, N])."""
    _check(a, b, k, True, "topk_intersection")
    return _compute(a, b, k, "topk_intersection")[0]


def kendall_tau(a: Tensor, b: Tensor) -> Tensor:
    """(B,) float64: Kendall tau-b per pair (ties handled; NaN for a constant map)."""
    _check(a, b, None, False, "kendall_tau")
    return _compute(a, b, 1, "kendall_tau")[1]


def spearman_rho(a: Tensor, b: Tensor) -> Tensor:
    """(B,) float64: Spearman rho per pair (average ranks for ties; NaN for a constant map)."""
    _check(a, b, None, False, "spearman_rho")
    return _compute(a, b, 1, "spearman_rho")[2]
