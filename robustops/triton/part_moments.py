"""Triton kernels of part_moments: the math of kernels/part_moments.h, restated in Triton.

Launcher contract as for the C++ kernels (see csrc/part_moments.h): logits (B, C, H, W)
contiguous; features (B, C-1, 5) of logits' dtype; stats (B, 6(C-1)+1) float64; grad
(B, C-1, 5) float64; softmax empty (not saved / recompute) or (B, C, H, W) contiguous in
the compute dtype (float64 for float64 logits, else float32): the forward writes S there,
the backward reads it instead of recomputing it (and reads the logits only if weighted).
Whatever the logits' dtype (float16 and bfloat16 included), every value is loaded and
then cast to the compute dtype (float32, float64 for float64 logits) before any
arithmetic, and the float64 features go to a half output through float32.
A program takes one image's block of BLOCK pixels with all its
channels as a (C_PAD, BLOCK) tile: channel softmax and foreground weight along axis 0,
per-part sums along axis 1. The forward writes per-block partial moments; a second
kernel (one program per image) adds them in block order in float64 and writes the
stats and features. The backward recomputes the per-part coefficients in each program
(K small formulas) and writes dL/dM for its tile.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

# One pinned config: autotuning needs a GPU, and the interpreter runs ~1 ms per
# program instance (the tests use tiny images).
BLOCK = 256
NUM_WARPS = 4
# The guards of kernels/part_moments.h (kPmMassEps, kPmVarEps, kPmFgEps).
MASS_EPS = tl.constexpr(1e-6)
VAR_EPS = tl.constexpr(1e-6)
FG_EPS = tl.constexpr(1e-6)


@triton.jit
def _load_tile(ptr, b, blk, C, H, W, C_PAD: tl.constexpr, BLOCK: tl.constexpr,
               F64: tl.constexpr):
    """(C_PAD, BLOCK) values of image b's pixel block blk in the compute dtype (0 outside),
    the pixel indices p, their mask pm, the channels ch, their mask cm and the tile mask."""
    hw = H * W
    p = blk * BLOCK + tl.arange(0, BLOCK)
    pm = p < hw
    ch = tl.arange(0, C_PAD)
    cm = ch < C
    mask = cm[:, None] & pm[None, :]
    x = tl.load(ptr + b * C * hw + ch[:, None].to(tl.int64) * hw + p[None, :], mask=mask,
                other=0.0)
    if F64:
        x = x.to(tl.float64)
    else:
        x = x.to(tl.float32)
    return x, p, pm, ch, cm, mask


@triton.jit
def _tile(m_ptr, b, blk, C, H, W, C_PAD: tl.constexpr, BLOCK: tl.constexpr, F64: tl.constexpr,
          WEIGHTED: tl.constexpr):
    """The (C_PAD, BLOCK) tile of image b: logits, softmax, coordinates, foreground weight."""
    m, p, pm, ch, cm, mask = _load_tile(m_ptr, b, blk, C, H, W, C_PAD, BLOCK, F64)
    mx = tl.max(tl.where(mask, m, float("-inf")), axis=0)
    mx = tl.where(pm, mx, 0.0)
    e = tl.where(mask, tl.exp(m - mx[None, :]), 0.0)
    z = tl.sum(e, axis=0)
    s = e / tl.where(pm, z, 1.0)[None, :]
    w_i = p % W
    h_i = p // W
    u = w_i.to(m.dtype) - (W - 1) * 0.5
    v = h_i.to(m.dtype) - (H - 1) * 0.5
    if WEIGHTED:
        sign = tl.where(ch == 0, -1.0, 1.0)
        sign = tl.where(cm, sign, 0.0)
        t = tl.sum(m * sign[:, None].to(m.dtype), axis=0)
        # sigmoid from exp(-|t|) <= 1: no overflow for large |t|.
        et = tl.exp(-tl.abs(t))
        f = tl.where(t >= 0, 1.0 / (1.0 + et), et / (1.0 + et))
        f = tl.where(pm, f, 0.0)
    else:
        f = tl.zeros([BLOCK], dtype=m.dtype)
    return m, s, u, v, f, ch, cm, mask


@triton.jit
def _saved_tile(s_ptr, b, blk, C, H, W, C_PAD: tl.constexpr, BLOCK: tl.constexpr,
                F64: tl.constexpr):
    """The (C_PAD, BLOCK) tile of image b of the saved softmax, and the coordinates."""
    s, p, pm, ch, cm, mask = _load_tile(s_ptr, b, blk, C, H, W, C_PAD, BLOCK, F64)
    u = (p % W).to(s.dtype) - (W - 1) * 0.5
    v = (p // W).to(s.dtype) - (H - 1) * 0.5
    return s, u, v, ch, cm, mask


@triton.jit
def _partials_kernel(m_ptr, part_ptr, s_ptr, C, H, W, NBLK, C_PAD: tl.constexpr,
                     BLOCK: tl.constexpr, F64: tl.constexpr, WEIGHTED: tl.constexpr,
                     SAVE: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    blk = tl.program_id(1)
    m, s, u, v, f, ch, cm, mask = _tile(m_ptr, b, blk, C, H, W, C_PAD, BLOCK, F64, WEIGHTED)
    if SAVE:
        hw = H * W
        p = blk * BLOCK + tl.arange(0, BLOCK)
        tl.store(s_ptr + b * C * hw + ch[:, None].to(tl.int64) * hw + p[None, :],
                 s.to(s_ptr.dtype.element_ty), mask=mask)
    su = s * u[None, :]
    sv = s * v[None, :]
    # Partials layout (B, NBLK, 6 * C_PAD + 1): quantity-major, F last.
    base = part_ptr + (b * NBLK + blk) * (6 * C_PAD + 1)
    tl.store(base + ch, tl.sum(s, axis=1))
    tl.store(base + C_PAD + ch, tl.sum(su, axis=1))
    tl.store(base + 2 * C_PAD + ch, tl.sum(su * u[None, :], axis=1))
    tl.store(base + 3 * C_PAD + ch, tl.sum(sv, axis=1))
    tl.store(base + 4 * C_PAD + ch, tl.sum(sv * v[None, :], axis=1))
    tl.store(base + 5 * C_PAD + ch, tl.sum(m * f[None, :], axis=1))
    tl.store(base + 6 * C_PAD, tl.sum(f, axis=0))


@triton.jit
def _axis(a, x, xx, mid):
    """(d, var, sigma) of one axis (pm_axis)."""
    at = a + MASS_EPS
    d = (x - mid * MASS_EPS) / at
    var = (xx - 2.0 * d * x + d * d * a) / at
    sigma = tl.sqrt(tl.maximum(var, 0.0, propagate_nan=tl.PropagateNan.ALL) + VAR_EPS)
    return d, var, sigma


@triton.jit
def _to_out(v, ty, F64: tl.constexpr):
    """A float64 feature in the output dtype ty, through the compute dtype (float32 unless
    the logits are float64): the interpreter's float64 -> bfloat16 cast returns garbage
    (zeros, denormals, NaN), and float32 is what the features are computed in anyway."""
    if F64:
        return v.to(ty)
    else:
        return v.to(tl.float32).to(ty)


@triton.jit
def _finalize_kernel(part_ptr, stats_ptr, feat_ptr, C, H, W, NBLK, C_PAD: tl.constexpr,
                     F64: tl.constexpr, WEIGHTED: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    ch = tl.arange(0, C_PAD)
    valid = (ch >= 1) & (ch < C)
    a = tl.zeros([C_PAD], dtype=tl.float64)
    x = tl.zeros([C_PAD], dtype=tl.float64)
    xx = tl.zeros([C_PAD], dtype=tl.float64)
    y = tl.zeros([C_PAD], dtype=tl.float64)
    yy = tl.zeros([C_PAD], dtype=tl.float64)
    q = tl.zeros([C_PAD], dtype=tl.float64)
    fsum = tl.zeros([C_PAD], dtype=tl.float64)  # every lane holds the same F
    for blk in range(0, NBLK):
        base = part_ptr + (b * NBLK + blk) * (6 * C_PAD + 1)
        a += tl.load(base + ch).to(tl.float64)
        x += tl.load(base + C_PAD + ch).to(tl.float64)
        xx += tl.load(base + 2 * C_PAD + ch).to(tl.float64)
        y += tl.load(base + 3 * C_PAD + ch).to(tl.float64)
        yy += tl.load(base + 4 * C_PAD + ch).to(tl.float64)
        q += tl.load(base + 5 * C_PAD + ch).to(tl.float64)
        fsum += tl.load(base + 6 * C_PAD + ch * 0).to(tl.float64)
    k = C - 1
    sbase = stats_ptr + b * (6 * k + 1) + (ch - 1) * 6
    tl.store(sbase, a, mask=valid)
    tl.store(sbase + 1, x, mask=valid)
    tl.store(sbase + 2, xx, mask=valid)
    tl.store(sbase + 3, y, mask=valid)
    tl.store(sbase + 4, yy, mask=valid)
    tl.store(sbase + 5, q, mask=valid)
    tl.store(stats_ptr + b * (6 * k + 1) + 6 * k + ch * 0, fsum, mask=ch == 0)
    fw = W * 1.0
    fh = H * 1.0
    dx, _vx, sx = _axis(a, x, xx, (fw - 1.0) * 0.5)
    dy, _vy, sy = _axis(a, y, yy, (fh - 1.0) * 0.5)
    if WEIGHTED:
        first = q / tl.maximum(fsum, FG_EPS, propagate_nan=tl.PropagateNan.ALL)
    else:
        first = a / (fh * fw)
    ty = feat_ptr.dtype.element_ty
    fbase = feat_ptr + (b * k + ch - 1) * 5
    tl.store(fbase, _to_out(first, ty, F64), mask=valid)
    tl.store(fbase + 1, _to_out((dx + (fw - 1.0) * 0.5) / fw * 2.0 - 1.0, ty, F64), mask=valid)
    tl.store(fbase + 2, _to_out((dy + (fh - 1.0) * 0.5) / fh * 2.0 - 1.0, ty, F64), mask=valid)
    tl.store(fbase + 3, _to_out(sx / fw * 2.0, ty, F64), mask=valid)
    tl.store(fbase + 4, _to_out(sy / fh * 2.0, ty, F64), mask=valid)


@triton.jit
def _axis_backward(a, x, xx, mid, gc, gs):
    """(d/dA share, d/dX, d/dXX) of one axis (pm_coeffs)."""
    at = a + MASS_EPS
    d, var, sigma = _axis(a, x, xx, mid)
    gvar = tl.where(var > 0.0, gs / (2.0 * sigma), 0.0)
    gd = gc + gvar * 2.0 * (d * a - x) / at
    return (gvar * (d * d - var) - gd * d) / at, (gd - 2.0 * gvar * d) / at, gvar / at


@triton.jit
def _backward_kernel(out_ptr, g_ptr, m_ptr, stats_ptr, s_ptr, C, H, W, C_PAD: tl.constexpr,
                     BLOCK: tl.constexpr, F64: tl.constexpr, WEIGHTED: tl.constexpr,
                     SAVED: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    blk = tl.program_id(1)
    k = C - 1
    chv = tl.arange(0, C_PAD)
    valid = (chv >= 1) & (chv < C)
    sbase = stats_ptr + b * (6 * k + 1) + (chv - 1) * 6
    a = tl.load(sbase, mask=valid, other=0.0)
    x = tl.load(sbase + 1, mask=valid, other=0.0)
    xx = tl.load(sbase + 2, mask=valid, other=0.0)
    y = tl.load(sbase + 3, mask=valid, other=0.0)
    yy = tl.load(sbase + 4, mask=valid, other=0.0)
    q = tl.load(sbase + 5, mask=valid, other=0.0)
    fsum = tl.load(stats_ptr + b * (6 * k + 1) + 6 * k + chv * 0)
    gbase = g_ptr + (b * k + chv - 1) * 5
    g0 = tl.load(gbase, mask=valid, other=0.0)
    g1 = tl.load(gbase + 1, mask=valid, other=0.0)
    g2 = tl.load(gbase + 2, mask=valid, other=0.0)
    g3 = tl.load(gbase + 3, mask=valid, other=0.0)
    g4 = tl.load(gbase + 4, mask=valid, other=0.0)
    fw = W * 1.0
    fh = H * 1.0
    ax_a, cb, cc = _axis_backward(a, x, xx, (fw - 1.0) * 0.5, g1 * 2.0 / fw, g3 * 2.0 / fw)
    ay_a, cd, ce = _axis_backward(a, y, yy, (fh - 1.0) * 0.5, g2 * 2.0 / fh, g4 * 2.0 / fh)
    if WEIGHTED:
        fc = tl.maximum(fsum, FG_EPS, propagate_nan=tl.PropagateNan.ALL)
        ca = ax_a + ay_a
        dq = g0 / fc
        dfs = tl.where(fsum > FG_EPS, -g0 * q / (fc * fc), 0.0)
        dfsum = tl.sum(tl.where(valid, dfs, 0.0), axis=0)
    else:
        ca = ax_a + ay_a + g0 / (fh * fw)
        dq = tl.zeros([C_PAD], dtype=tl.float64)
        dfsum = 0.0
    ca = tl.where(valid, ca, 0.0)
    cb = tl.where(valid, cb, 0.0)
    cc = tl.where(valid, cc, 0.0)
    cd = tl.where(valid, cd, 0.0)
    ce = tl.where(valid, ce, 0.0)
    dq = tl.where(valid, dq, 0.0)

    if WEIGHTED:
        # f and phi need the logits; S comes from the forward when it saved it.
        m, s, u, v, f, ch, cm, mask = _tile(m_ptr, b, blk, C, H, W, C_PAD, BLOCK, F64,
                                            WEIGHTED)
        if SAVED:
            s = _saved_tile(s_ptr, b, blk, C, H, W, C_PAD, BLOCK, F64)[0]
    else:
        if SAVED:
            s, u, v, ch, cm, mask = _saved_tile(s_ptr, b, blk, C, H, W, C_PAD, BLOCK, F64)
        else:
            m, s, u, v, f, ch, cm, mask = _tile(m_ptr, b, blk, C, H, W, C_PAD, BLOCK, F64,
                                                WEIGHTED)
    ct = s.dtype
    uu = u[None, :]
    vv = v[None, :]
    gk = (ca.to(ct)[:, None] + uu * (cb.to(ct)[:, None] + cc.to(ct)[:, None] * uu)
          + vv * (cd.to(ct)[:, None] + ce.to(ct)[:, None] * vv))
    dot = tl.sum(s * gk, axis=0)
    out = s * (gk - dot[None, :])
    if WEIGHTED:
        dqt = dq.to(ct)[:, None]
        phi = tl.sum(dqt * m, axis=0) + dfsum.to(ct)
        sp = (phi * f * (1.0 - f))[None, :]
        out += tl.where((ch == 0)[:, None], -sp, dqt * f[None, :] + sp)
    hw = H * W
    p = blk * BLOCK + tl.arange(0, BLOCK)
    tl.store(out_ptr + b * C * hw + ch[:, None].to(tl.int64) * hw + p[None, :],
             out.to(out_ptr.dtype.element_ty), mask=mask)


def _grid(logits: torch.Tensor):
    b, c, h, w = logits.shape
    return b, triton.cdiv(h * w, BLOCK), triton.next_power_of_2(c)


def part_moments_triton(features: torch.Tensor, stats: torch.Tensor, softmax: torch.Tensor,
                        logits: torch.Tensor, weighted: bool) -> None:
    """Write features (B, K, 5) and stats (B, 6K+1) float64 of logits (B, K+1, H, W), and
    the channel softmax into softmax unless it is empty."""
    b, nblk, c_pad = _grid(logits)
    _, c, h, w = logits.shape
    f64 = logits.dtype == torch.float64
    partials = torch.empty((b, nblk, 6 * c_pad + 1), device=logits.device,
                           dtype=torch.float64 if f64 else torch.float32)
    save = softmax.numel() > 0
    _partials_kernel[(b, nblk)](logits, partials, softmax if save else partials, c, h, w,
                                nblk, C_PAD=c_pad, BLOCK=BLOCK, F64=f64, WEIGHTED=weighted,
                                SAVE=save, num_warps=NUM_WARPS)
    _finalize_kernel[(b,)](partials, stats, features, c, h, w, nblk, C_PAD=c_pad, F64=f64,
                           WEIGHTED=weighted, num_warps=1)


def part_moments_backward_triton(grad_logits: torch.Tensor, grad: torch.Tensor,
                                 logits: torch.Tensor, stats: torch.Tensor,
                                 softmax: torch.Tensor, weighted: bool) -> None:
    """Write dL/dlogits into grad_logits from grad (B, K, 5) float64, the stats and the
    saved softmax (empty: recomputed from the logits)."""
    b, nblk, c_pad = _grid(logits)
    _, c, h, w = logits.shape
    saved = softmax.numel() > 0
    _backward_kernel[(b, nblk)](grad_logits, grad, logits, stats, softmax if saved else stats,
                                c, h, w, C_PAD=c_pad, BLOCK=BLOCK,
                                F64=logits.dtype == torch.float64, WEIGHTED=weighted,
                                SAVED=saved, num_warps=NUM_WARPS)
