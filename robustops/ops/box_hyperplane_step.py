"""box_hyperplane_step: FAB's minimal step onto a hyperplane inside the image box.

For N rows t, w (D values each) and offsets b (N,): the smallest step d (L-inf or L2
norm) with w.(t + d) = b and lo <= t + d <= hi; where the hyperplane misses the box, d
reaches the box corner nearest to it. The projection of FAB (Croce & Hein, 2020;
robustops/attacks/fab.py), which projects both its iterate and the clean input onto the
linearised decision boundary at every step.

Oriented so that the step must lower w.z by c = |w.t - b|, coordinate i moves by
-sign(w_i) min(lam s_i, cap_i) (s_i = 1 for L-inf, |w_i| for L2: the KKT form of both
problems), cap_i being its room in the box. The decrease is piecewise linear and
non-decreasing in lam, with kinks where coordinates saturate; lam solves decrease = c
(formulas: kernels/box_hyperplane_step.h). A row whose w.t - b is not finite (a NaN or
Inf in t, w or b) gets NaN steps.

Backends: ``cpp`` (CPU tensors) runs csrc/cpu/box_hyperplane_step.cpp: one row per
task, Newton steps for lam in cache and a sort of the kinks only for a row they leave
unsettled, rows in parallel; ``triton`` (robustops/triton/box_hyperplane_step.py) is what
CUDA tensors run under ``auto`` when Triton is installed: one program per row, Newton
steps then a bisection on lam for unsettled rows; ``reference`` is the plain-PyTorch
composition FAB ran before (sorting the kinks of every row, or on the CPU Newton steps
first and sorting the unsettled rows after one host read), on any device. There is no
``cuda`` backend: the op has no CUDA kernel. A step of an attack: no gradient.

Layers: the op ``robustops::box_hyperplane_step(t, w, b, norm, lo, hi) -> d`` is declared
in C++ (csrc/ops/box_hyperplane_step.cpp, with its argument checks, dtype choice and its
autograd kernel, which runs the kernel below autograd) and runs the CPU kernel registered
in csrc/cpu/box_hyperplane_step.cpp. This file holds the public function, the fake
kernel, the reference and the Triton backend as ``robustops::box_hyperplane_step_triton``.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import Tensor
from torch.compiler import is_compiling

from .. import backend
from ..arguments import require_real, require_tensor
from .pgd_step import normalize_norm

__all__ = ["box_hyperplane_step", "box_hyperplane_step_reference"]

OP = "box_hyperplane_step"
BACKENDS = ("reference", "cpp", "triton")

# Newton steps the reference takes after the first (free) one before sorting, on the
# CPU: FAB-T on an MNIST MLP (L-inf 0.1, 40 images, 9 targets x 100 steps: 28,800
# projections) settled 55% of them after 1, 99.98% after 2, all after 3; FAB-T on 35
# robust images took 1.4 s with 2, 1.6 s with 3, 2.8 s sorting every row (load 3).
NEWTON_STEPS = 2


# ----------------------------------------------------------------------------- reference


def _result_dtype(t: Tensor, w: Tensor, b: Tensor) -> torch.dtype:
    """The op's compute and output dtype: float64 when any input is float64, else float32."""
    return torch.float64 if torch.float64 in (t.dtype, w.dtype, b.dtype) else torch.float32



def box_hyperplane_step_reference(t: Tensor, w: Tensor, b: Tensor, norm: str = "linf",
                                  lo: float = 0.0, hi: float = 1.0,
                                  newton: Optional[int] = None) -> Tensor:
    """Plain-PyTorch box_hyperplane_step of (N, D) rows t, w and (N,) b, in float64 when
    any of them is float64, else float32 (checked arguments; norm 'linf' or 'l2').

    lam comes from sorting the kinks of every row and a searchsorted on the decrease at
    each kink (the reference FAB sorts too, then bisects). newton: find lam by this many
    Newton steps first and sort only the rows they leave unsettled (one host read: meant
    for the CPU). The result is the same either way (to rounding).
    """
    dt = _result_dtype(t, w, b)
    t, w = t.to(dt), w.to(dt)
    c = (w * t).sum(1) - b.to(dt)
    orient = torch.where(c >= 0, 1.0, -1.0).to(dt)
    w, c = w * orient[:, None], c * orient
    aw = w.abs()
    active = aw > 1e-12
    cap = torch.where(w > 0, t - lo, hi - t).clamp_min(0)
    # A coordinate with no room left (cap 0) never moves: no kink, no slope. (Products
    # with the mask rather than torch.where: several times faster on the CPU.)
    # (kink + 1 - live) / live: the kink where live, +inf elsewhere (kinks are >= 0);
    # faster than masked_fill on the CPU.
    live = (active & (cap > 0)).to(dt)
    dead = 1 - live
    if norm == "linf":
        slope = aw * live
        kink = (cap + dead).div_(live)
        lam = _sorted_lambda(c, kink, slope, slope * cap, newton)
        d = torch.minimum(lam[:, None].expand_as(cap), cap)
    else:
        slope = aw * aw * live
        kink = (cap / aw.clamp_min(1e-30)).add_(dead).div_(live)
        lam = _sorted_lambda(c, kink, slope, aw * cap * live, newton)
        d = torch.fmin(lam[:, None] * aw, cap)  # fmin: inf * 0 (a box miss, w_i = 0) is nan
    d = d.mul_(torch.sign(w).neg_().mul_(live))
    # No step is defined where w.t - b is not finite (as the kernels: NaN rows).
    return torch.where(torch.isfinite(c)[:, None], d, math.nan)


def _sorted_lambda(c: Tensor, kink: Tensor, slope: Tensor, gain: Tensor,
                   newton: Optional[int]) -> Tensor:
    """(N,) the exact lam (inf where the hyperplane misses the box) from the kinks (N, D)
    (inf: no kink), the slopes of the decrease before them and the gains after them;
    newton: Newton steps tried first (rows they do not settle are sorted)."""
    if newton is None:
        return _lambda_among(c, kink, slope, gain)
    lam, settled = _newton_lambda(c, kink, slope, gain, newton)
    rest = (~settled).nonzero()[:, 0]  # the one host read
    if rest.numel():
        lam[rest] = _lambda_among(c[rest], kink[rest], slope[rest], gain[rest])
    return lam


def _newton_lambda(c: Tensor, kink: Tensor, slope: Tensor, gain: Tensor,
                   steps: int) -> Tuple[Tensor, Tensor]:
    """(lam (N,), settled (N,) bool) by Newton's method on the decrease from lam = 0.

    The decrease is concave and piecewise linear, so Newton's steps rise to the root
    without passing it, and the step taken from the root's own linear piece lands on it:
    lam is exact where a step saturates no new coordinate (settled). Each step costs a
    few passes over (N, D), against a sort's many."""
    total_slope = slope.sum(1)
    lam = c / total_slope.clamp_min(1e-30)  # the first step: nothing saturated at 0
    count = torch.zeros_like(c)
    for _ in range(steps):
        # The mask as floats once: products with a bool mask convert it each time.
        saturated = (kink <= lam[:, None]).to(c.dtype)
        new_count = saturated.sum(1)
        settled = new_count == count
        count = new_count
        gained = (gain * saturated).sum(1)
        left = total_slope - (slope * saturated).sum(1)
        lam = torch.where(settled, lam, (c - gained) / left.clamp_min(1e-30))
    settled = (kink <= lam[:, None]).sum(1).to(c.dtype) == count
    # Past every kink without reaching c: the hyperplane misses the box.
    missed = gain.sum(1) < c
    return torch.where(missed, math.inf, lam), settled | missed


def _lambda_among(c: Tensor, kink: Tensor, slope: Tensor, gain: Tensor) -> Tensor:
    """(N,) lam by sorting the kinks: the decrease at each kink, a searchsorted for c."""
    kink_s, order = kink.sort(dim=1)
    gained = gain.gather(1, order).cumsum(1)
    total_slope = slope.sum(1, keepdim=True)
    left = total_slope - slope.gather(1, order).cumsum(1)
    decrease = torch.where(torch.isinf(kink_s), gained, gained + kink_s * left.clamp_min(0))
    k = torch.searchsorted(decrease.cummax(1).values, c[:, None].contiguous())[:, 0]
    prev = (k - 1).clamp_min(0)[:, None]
    gained_before = torch.where(k > 0, gained.gather(1, prev)[:, 0], 0.0)
    slope_left = torch.where(k > 0, left.gather(1, prev)[:, 0], total_slope[:, 0])
    lam = (c - gained_before) / slope_left.clamp_min(1e-30)
    # Past every kink without reaching c: the hyperplane misses the box. (Tested on the
    # gains' total too: the slope left after the last kink is 0 only up to the cumsum's
    # rounding, which times a large L2 kink (cap / |w_i|) can fake the last reach.)
    return torch.where((k < kink_s.shape[1]) & (gain.sum(1) >= c), lam, math.inf)


# ----------------------------------------------------------------------------- python checks


def _norm_name(norm) -> str:
    """'linf' or 'l2' (aliases as pgd_step takes them), or the op's ValueError."""
    try:
        return normalize_norm(norm)
    except ValueError as exc:
        raise ValueError(f"{OP}: {exc}") from None


def _check(t, w, b, norm, lo, hi) -> str:
    """The checks of csrc/ops/box_hyperplane_step.cpp (same messages); returns the norm."""
    for name, x in (("t", t), ("w", w), ("b", b)):
        require_tensor(OP, name, x)
        if not x.is_floating_point():
            raise ValueError(f"{OP}: {name} must be a floating-point tensor, got {x.dtype}")
    if t.ndim != 2:
        raise ValueError(f"{OP}: t must be (N, D) rows (flatten each sample with "
                         f"t.flatten(1)), got shape {tuple(t.shape)}")
    if w.shape != t.shape:
        raise ValueError(f"{OP}: w has shape {tuple(w.shape)} but t has {tuple(t.shape)}; "
                         "they must match")
    if b.ndim != 1 or b.shape[0] != t.shape[0]:
        raise ValueError(f"{OP}: b must be (N,) = ({t.shape[0]},), one offset per row of t, "
                         f"got shape {tuple(b.shape)}")
    for name, x in (("w", w), ("b", b)):
        if x.device != t.device:
            raise ValueError(f"{OP}: {name} is on {x.device} but t is on {t.device}; move it "
                             f"with {name}.to(t.device)")
    norm = _norm_name(norm)
    lo = require_real(lo, "lo", where=OP, finite=False)
    hi = require_real(hi, "hi", where=OP, finite=False)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
        raise ValueError(f"{OP}: the box [lo, hi] must be finite with lo <= hi, got "
                         f"[{lo!r}, {hi!r}]")
    return norm


# ----------------------------------------------------------------------------- fake kernel


def _fake(t, w, b, norm, lo, hi):
    _check(t, w, b, norm, lo, hi)
    dt = _result_dtype(t, w, b)
    return t.new_empty(t.shape, dtype=dt)


_OP, _OP_EAGER = backend.native_op(OP, {OP: _fake})


# ----------------------------------------------------------------------------- triton backend


@torch.library.custom_op("robustops::box_hyperplane_step_triton", mutates_args=())
def _box_hyperplane_step_triton(t: Tensor, w: Tensor, b: Tensor, norm: str, lo: float,
                                hi: float) -> Tensor:
    """The Triton kernel on checked (N, D) rows of one dtype."""
    from ..triton.box_hyperplane_step import box_hyperplane_step_triton
    out = t.new_empty(t.shape)  # contiguous (empty_like would keep t's strides)
    box_hyperplane_step_triton(out, t.contiguous(), w.contiguous(), b.contiguous(),
                               norm == "l2", lo, hi)
    return out


@_box_hyperplane_step_triton.register_fake
def _(t, w, b, norm, lo, hi):
    return t.new_empty(t.shape)


# ----------------------------------------------------------------------------- public API


def box_hyperplane_step(t: Tensor, w: Tensor, b: Tensor, norm: str = "linf", lo: float = 0.0,
                        hi: float = 1.0) -> Tensor:
    """The smallest step d (L-inf or L2 norm) with w.(t + d) = b and t + d in [lo, hi].

    t, w: (N, D) floating rows; b: (N,); norm: 'linf' or 'l2' (or inf / 2); lo <= hi: the
    box. Returns d (N, D), float64 when any input is float64, else float32. Where the
    hyperplane misses the box, d reaches the box corner nearest to it; a row whose
    w.t - b is not finite gets NaN.
    """
    if norm != "linf" and norm != "l2":
        norm = _norm_name(norm)
    try:
        name = backend.python_path(t, OP, BACKENDS)
        if name is None:
            return (_OP if is_compiling() else _OP_EAGER)(t, w, b, norm, lo, hi)
    except (TypeError, AttributeError, RuntimeError):
        _check(t, w, b, norm, lo, hi)  # clearer messages
        raise
    norm = _check(t, w, b, norm, lo, hi)
    lo, hi = float(lo), float(hi)
    dt = _result_dtype(t, w, b)
    if name == "triton":
        return _box_hyperplane_step_triton(t.detach().to(dt), w.detach().to(dt),
                                           b.detach().to(dt), norm, lo, hi)
    return box_hyperplane_step_reference(t.detach(), w.detach(), b.detach(), norm, lo, hi,
                                         newton=NEWTON_STEPS if t.is_cpu else None)
