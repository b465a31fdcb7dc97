"""Triton kernel of box_hyperplane_step: FAB's minimal step onto a hyperplane in the box.

Launcher contract: t, w (N, D) contiguous and b (N,) contiguous, one float dtype (float32
or float64), out (N, D) of that dtype; lo <= hi finite (the ops file checks). One program
per row, every pass a loop over the row in BLOCK values (the formulas of
kernels/box_hyperplane_step.h, restated; sums in float64):

  1. c = w.t - b; a non-finite c gives a NaN row; orient so that c >= 0;
  2. the slope and gain totals of the live coordinates (kink_i = cap_i / s_i);
  3. Newton from lam = c / total slope, at most NEWTON_STEPS passes (each: the gain and
     slope of the coordinates saturated at lam), stopping once a step saturates no new
     coordinate (lam is then exact); lam = +inf where the gains cannot reach c;
  4. a row still unsettled: bisection over the bit patterns of lam >= 0 (float64, 64
     passes) for the last lam whose decrease falls short of c, then the Newton step from
     its saturated set (the exact root: no kink lies between adjacent floats);
  5. the step -sign(w_i) min(lam s_i, cap_i) of every live coordinate, 0 elsewhere.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

# One pinned config: autotuning needs a GPU, and the interpreter runs ~1 ms per program.
BLOCK = 1024
NEWTON_STEPS = 8
NUM_WARPS = 4
# (constexpr: a jitted function reads no other globals)
ACTIVE_WEIGHT = tl.constexpr(1e-12)   # kernels/box_hyperplane_step.h: kBoxActiveWeight
SLOPE_FLOOR = tl.constexpr(1e-30)     # kBoxSlopeFloor
INF_BITS = tl.constexpr(0x7FF0000000000000)  # the bits of float64 +inf


@triton.jit
def _coords(t_row, w_row, o, m, orient, lo, hi, L2: tl.constexpr):
    """(w oriented, cap, live, s, kink (+inf where dead), slope, gain) of offsets o."""
    t = tl.load(t_row + o, mask=m, other=0)
    wo = tl.load(w_row + o, mask=m, other=0) * orient
    aw = tl.abs(wo)
    cap = tl.maximum(tl.where(wo > 0, t - lo, hi - t), 0)
    live = m & (aw > ACTIVE_WEIGHT) & (cap > 0)
    if L2:
        s = aw
    else:
        s = tl.full(aw.shape, 1.0, aw.dtype)
    kink = tl.where(live, cap / tl.where(live, s, 1.0), float("inf"))
    slope = tl.where(live, aw * s, 0.0)
    gain = tl.where(live, aw * cap, 0.0)
    return wo, cap, live, s, kink, slope, gain


@triton.jit
def _saturated(t_row, w_row, d, orient, lo, hi, lam, L2: tl.constexpr, BLOCK: tl.constexpr):
    """(count, gain, slope) of the coordinates with kink <= lam (float64 sums)."""
    count = tl.zeros([BLOCK], dtype=tl.int64)
    gained = tl.zeros([BLOCK], dtype=tl.float64)
    sat_slope = tl.zeros([BLOCK], dtype=tl.float64)
    for s0 in range(0, d, BLOCK):
        o = s0 + tl.arange(0, BLOCK)
        _, _, _, _, kink, slope, gain = _coords(t_row, w_row, o, o < d, orient, lo, hi, L2)
        sat = kink.to(tl.float64) <= lam
        count += sat.to(tl.int64)
        gained += tl.where(sat, gain.to(tl.float64), 0.0)
        sat_slope += tl.where(sat, slope.to(tl.float64), 0.0)
    return tl.sum(count, axis=0), tl.sum(gained, axis=0), tl.sum(sat_slope, axis=0)


@triton.jit
def _decrease(t_row, w_row, d, orient, lo, hi, lam, L2: tl.constexpr, BLOCK: tl.constexpr):
    """sum_i slope_i min(lam, kink_i) (float64)."""
    acc = tl.zeros([BLOCK], dtype=tl.float64)
    for s0 in range(0, d, BLOCK):
        o = s0 + tl.arange(0, BLOCK)
        _, _, _, _, kink, slope, _ = _coords(t_row, w_row, o, o < d, orient, lo, hi, L2)
        # (lam is finite here, so a dead coordinate adds 0 * lam, never 0 * inf.)
        acc += slope.to(tl.float64) * tl.minimum(kink.to(tl.float64), lam)
    return tl.sum(acc, axis=0)


@triton.jit
def _box_hyperplane_step_kernel(out_ptr, t_ptr, w_ptr, b_ptr, d, lo, hi, L2: tl.constexpr,
                                NEWTON_STEPS: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    t_row = t_ptr + row * d
    w_row = w_ptr + row * d
    out_row = out_ptr + row * d
    dot = tl.zeros([BLOCK], dtype=tl.float64)
    for s0 in range(0, d, BLOCK):
        o = s0 + tl.arange(0, BLOCK)
        m = o < d
        dot += (tl.load(w_row + o, mask=m, other=0).to(tl.float64)
                * tl.load(t_row + o, mask=m, other=0).to(tl.float64))
    c_signed = tl.sum(dot, axis=0) - tl.load(b_ptr + row).to(tl.float64)
    finite = tl.abs(c_signed) < float("inf")  # False for NaN too
    c = tl.abs(c_signed)
    orient = tl.where(c_signed >= 0, 1.0, -1.0).to(t_ptr.dtype.element_ty)
    total_slope = tl.zeros([BLOCK], dtype=tl.float64)
    total_gain = tl.zeros([BLOCK], dtype=tl.float64)
    for s0 in range(0, d, BLOCK):
        o = s0 + tl.arange(0, BLOCK)
        _, _, _, _, _, slope, gain = _coords(t_row, w_row, o, o < d, orient, lo, hi, L2)
        total_slope += slope.to(tl.float64)
        total_gain += gain.to(tl.float64)
    slope_all = tl.sum(total_slope, axis=0)
    missed = (tl.sum(total_gain, axis=0) < c) | (finite == 0)
    # Newton from lam = 0 (nothing saturated); an unchanged count means an unchanged set.
    lam = c / tl.maximum(slope_all, SLOPE_FLOOR)
    count = tl.zeros([], dtype=tl.int64)
    settled = missed
    for _ in range(NEWTON_STEPS):
        if settled == 0:
            n_sat, gained, sat_slope = _saturated(t_row, w_row, d, orient, lo, hi, lam, L2,
                                                  BLOCK)
            settled = n_sat == count
            if settled == 0:
                lam = (c - gained) / tl.maximum(slope_all - sat_slope, SLOPE_FLOOR)
            count = n_sat
    if settled == 0:
        # Bisection on lam's bits: the last float64 whose decrease falls short of c.
        lo_bits = tl.zeros([], dtype=tl.int64)
        hi_bits = tl.zeros([], dtype=tl.int64) + INF_BITS
        for _ in range(64):
            mid = lo_bits + (hi_bits - lo_bits) // 2
            short = _decrease(t_row, w_row, d, orient, lo, hi, mid.to(tl.float64, bitcast=True),
                              L2, BLOCK) < c
            lo_bits = tl.where(short, mid, lo_bits)
            hi_bits = tl.where(short, hi_bits, mid)
        _, gained, sat_slope = _saturated(t_row, w_row, d, orient, lo, hi,
                                          lo_bits.to(tl.float64, bitcast=True), L2, BLOCK)
        lam = (c - gained) / tl.maximum(slope_all - sat_slope, SLOPE_FLOOR)
    lam = tl.where(missed, float("inf"), lam)
    lam_t = lam.to(t_ptr.dtype.element_ty)
    for s0 in range(0, d, BLOCK):
        o = s0 + tl.arange(0, BLOCK)
        m = o < d
        wo, cap, live, s, _, _, _ = _coords(t_row, w_row, o, m, orient, lo, hi, L2)
        move = tl.minimum(lam_t * s, cap)
        step = tl.where(live, tl.where(wo > 0, -move, move), 0.0)
        tl.store(out_row + o, tl.where(finite, step, float("nan")).to(out_ptr.dtype.element_ty),
                 mask=m)


def box_hyperplane_step_triton(out: torch.Tensor, t: torch.Tensor, w: torch.Tensor,
                               b: torch.Tensor, l2: bool, lo: float, hi: float) -> None:
    """Write the step of each row of (t, w, b) into out (N, D)."""
    rows, d = t.shape
    if rows == 0 or d == 0:
        return
    _box_hyperplane_step_kernel[(rows,)](out, t, w, b, d, lo, hi, L2=l2,
                                         NEWTON_STEPS=NEWTON_STEPS, BLOCK=BLOCK,
                                         num_warps=NUM_WARPS)
