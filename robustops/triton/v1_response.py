"""Triton kernels of v1_response: the math of kernels/v1_response.h, restated in Triton.

Launcher contract as for the C++ kernels (see csrc/v1_response.h): q0 (B, C0, H, W),
q1 (B, Cc, H, W), out/grad_out/grad_q0 like q0 and grad_q1 like q1, all contiguous
NCHW or all channels_last (CHANNELS_LAST); index (B,) int64 contiguous (noise only).

The noise comes in Box-Muller pairs (elements 2p and 2p + 1 of a sample's logical
NCHW order share u1, u2: cosine and sine), so a program takes BLOCK pairs as a
[BLOCK, 2] tile and draws each pair once:
  NCHW: unit (sample, pair p): elements j = 2p, 2p + 1, adjacent in memory.
  channels_last: unit (sample, m, channel c): pixels pb, pb + 1 of channel c with
    pb = 2m - ((c*H*W) & 1) (so c*H*W + pb is even); consecutive units are
    consecutive channels, so loads stay coalesced. A pixel outside [0, H*W) (its
    pair straddles two channels when H*W is odd) is masked: the neighbouring
    channel's unit writes it.
Computes in float32 (float64 for float64 tensors); the Box-Muller runs in the same
precision: float64 with tl.log/tl.cos/tl.sin, float32 with the libm-free log and
quarter-turn sincos of kernels/v1_response.h (Triton's float32 transcendentals may
be approximate on GPUs).
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from .counter_rng import _fmix32, _row

# One pinned config: autotuning needs a GPU, and the interpreter runs ~1 ms per program.
BLOCK = 512  # pairs per program (1024 elements)
NUM_WARPS = 4
INV_SQRT2 = tl.constexpr(0.70710678118654752440)
NOISE_EPS = tl.constexpr(1e-4)
# v1_energy's thresholds and power-of-two scales (kernels/v1_response.h), per compute type.
E32_BIG = tl.constexpr(2.0 ** 62)
E32_SMALL = tl.constexpr(2.0 ** -62)
E32_DOWN = tl.constexpr(2.0 ** -66)
E32_UP = tl.constexpr(2.0 ** 66)
E64_BIG = tl.constexpr(2.0 ** 510)
E64_SMALL = tl.constexpr(2.0 ** -510)
E64_DOWN = tl.constexpr(2.0 ** -514)
E64_UP = tl.constexpr(2.0 ** 514)


@triton.jit
def _bits23(row, p):
    """The 23 random bits of counter (row, p): rng_bits(row, p) >> 9 (kernels/counter_rng.h)."""
    col = _fmix32((p.to(tl.uint32) * 0x9E3779B9) ^ 0x1B873593)
    return _fmix32(_fmix32(row ^ col) ^ (row >> 7)) >> 9


@triton.jit
def _log_f32(x):
    """logf for normal x > 0: fdlibm's e_logf.c without branches (v1_log(float))."""
    bits = x.to(tl.int32, bitcast=True)
    hx = bits & 0x007FFFFF
    i = (hx + 0x4AFB0D) & 0x800000
    m = (hx | (i ^ 0x3F800000)).to(tl.float32, bitcast=True)
    dk = (((bits >> 23) & 0xFF) - 127 + (i >> 23)).to(tl.float32)
    f = m - 1.0
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    r = z * (0.66666662693 + w * 0.28498786688) + w * (0.40000972152 + w * 0.24279078841)
    hfsq = 0.5 * f * f
    near = dk * 6.9313812256e-01 - ((hfsq - (s * (hfsq + r) + dk * 9.0580006145e-06)) - f)
    other = dk * 6.9313812256e-01 - ((s * (f - r) - dk * 9.0580006145e-06) - f)
    return tl.where((hx > 0x30A3D0) & (hx < 0x35C288), near, other)


@triton.jit
def _sincos_2pi_f32(u):
    """(sin 2 pi u, cos 2 pi u) for u in [0, 1], u a multiple of 2^-24 (v1_sincos_2pi(float))."""
    t = 4.0 * u + 12582912.0
    q = t.to(tl.int32, bitcast=True)
    f = u - 0.25 * (t - 12582912.0)
    z = f * f
    sn = f * (6.2831854820251465 + z * (-41.3416633605957 + z * (81.59254455566406
                                                                 + z * -75.40184020996094)))
    cs = 1.0 + z * (-19.739208221435547 + z * (64.93936920166016 + z * (-85.44879913330078
                                                                        + z * 59.423248291015625)))
    odd = (q & 1) != 0
    sv = tl.where(odd, cs, sn)
    cv = tl.where(odd, sn, cs)
    return tl.where((q & 2) != 0, -sv, sv), tl.where(((q + 1) & 2) != 0, -cv, cv)


@triton.jit
def _noise_pair(index_ptr, b, p, umask, base1, base2, FP64: tl.constexpr):
    """Box-Muller pair p of samples b: (R cos 2 pi u2, R sin 2 pi u2), in the compute type."""
    idx = tl.load(index_ptr + b, mask=umask, other=0)
    k1 = _bits23(_row(base1.to(tl.uint32), idx), p)
    k2 = _bits23(_row(base2.to(tl.uint32), idx), p)
    if FP64:
        u1 = (k1.to(tl.float64) + 0.5) * (1.0 / 8388608.0)
        u2 = (k2.to(tl.float64) + 0.5) * (1.0 / 8388608.0)
        radius = tl.sqrt(-2.0 * tl.log(u1))
        theta = 6.283185307179586 * u2
        ne = radius * tl.cos(theta)
        no = radius * tl.sin(theta)
    else:
        u1 = (k1.to(tl.int32).to(tl.float32) + 0.5) * (1.0 / 8388608.0)
        u2 = (k2.to(tl.int32).to(tl.float32) + 0.5) * (1.0 / 8388608.0)
        radius = tl.sqrt(-2.0 * _log_f32(u1))
        sn, cs = _sincos_2pi_f32(u2)
        ne = radius * cs
        no = radius * sn
    return ne, no


@triton.jit
def _units(u, units, c0, cc, hw, S, CHANNELS_LAST: tl.constexpr):
    """The [BLOCK, 2] elements of units u [BLOCK]: sample b [BLOCK], pair p [BLOCK], and per
    element the channel, validity, q0 offset and q1 offset."""
    per = c0 * hw
    col = tl.arange(0, 2)[None, :]
    umask = u < units
    if CHANNELS_LAST:
        mh = (hw + 1) // 2
        b = u // (mh * c0)
        rem = u - b * (mh * c0)
        m = rem // c0
        c = rem - m * c0
        par = (c * hw) & 1
        p = (c * hw - par) // 2 + m
        pix = (2 * m - par)[:, None] + col
        c2 = c[:, None] + col * 0
        valid = umask[:, None] & (pix >= 0) & (pix < hw)
        offs = b[:, None] * per + pix * c0 + c2
        off1 = (b[:, None] * hw + pix) * cc + (c2 - S)
    else:
        npp = (per + 1) // 2
        b = u // npp
        p = u - b * npp
        j = 2 * p[:, None] + col
        c2 = j // hw
        pix = j - c2 * hw
        valid = umask[:, None] & (j < per)
        offs = b[:, None] * per + j
        off1 = (b[:, None] * cc + (c2 - S)) * hw + pix
    return b, p, umask, c2, valid, offs, off1


@triton.jit
def _relu(v):
    """relu that propagates NaN (v1_max0): NaN < 0 is false."""
    return tl.where(v < 0, 0.0, v)


@triton.jit
def _energy(a, b, FP64: tl.constexpr):
    """sqrt(a^2 + b^2) without overflow or underflow in the squares (v1_energy): both
    scaled by an exact power of two when max(|a|, |b|) is beyond 2^+-62 (2^+-510 in
    float64), the root scaled back. NaN propagates; +-inf gives +inf."""
    m = tl.maximum(tl.abs(a), tl.abs(b))
    if FP64:
        big = m > E64_BIG
        small = m < E64_SMALL
        s = tl.where(big, E64_DOWN, tl.where(small, E64_UP, 1.0))
        inv = tl.where(big, E64_UP, tl.where(small, E64_DOWN, 1.0))
    else:
        big = m > E32_BIG
        small = m < E32_SMALL
        s = tl.where(big, E32_DOWN, tl.where(small, E32_UP, 1.0))
        inv = tl.where(big, E32_UP, tl.where(small, E32_DOWN, 1.0))
    sa = a * s
    sb = b * s
    return tl.sqrt(sa * sa + sb * sb) * inv


@triton.jit
def _cells(a, bq, cplx, k, FP64: tl.constexpr):
    """x: k relu(a) for simple cells, k sqrt(a^2 + b^2) / sqrt(2) for complex ones."""
    return tl.where(cplx, k * _energy(a, bq, FP64) * INV_SQRT2, k * _relu(a))


@triton.jit
def _normals(index_ptr, b, p, umask, base1, base2, FP64: tl.constexpr):
    """[BLOCK, 2] normals in the compute type: column 0 the pair's cosine (even j), 1 its sine."""
    ne, no = _noise_pair(index_ptr, b, p, umask, base1, base2, FP64)
    col = tl.arange(0, 2)[None, :]
    return tl.where(col == 0, ne[:, None], no[:, None])


@triton.jit
def _v1_fwd_kernel(out_ptr, q0_ptr, q1_ptr, index_ptr, par_ptr, units, c0, cc, hw, S, base1,
                   base2, NOISE: tl.constexpr, CHANNELS_LAST: tl.constexpr,
                   FP64: tl.constexpr, BLOCK: tl.constexpr):
    ct = tl.float64 if FP64 else tl.float32
    u = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    b, p, umask, c, mask, offs, off1 = _units(u, units, c0, cc, hw, S, CHANNELS_LAST)
    cplx = c >= S
    k = tl.load(par_ptr).to(ct)
    a = tl.load(q0_ptr + offs, mask=mask, other=0).to(ct)
    bq = tl.load(q1_ptr + off1, mask=mask & cplx, other=0).to(ct)
    x = _cells(a, bq, cplx, k, FP64)
    if NOISE:
        s = tl.load(par_ptr + 1).to(ct)
        lv = tl.load(par_ptr + 2).to(ct)
        n = _normals(index_ptr, b, p, umask, base1, base2, FP64)
        r0 = s * x + lv
        r = r0 + n * tl.sqrt(_relu(r0) + NOISE_EPS)
        x = _relu((r - lv) / s)
    tl.store(out_ptr + offs, x.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _v1_bwd_kernel(gq0_ptr, gq1_ptr, go_ptr, q0_ptr, q1_ptr, index_ptr, par_ptr, units, c0, cc,
                   hw, S, base1, base2, NOISE: tl.constexpr, CHANNELS_LAST: tl.constexpr,
                   FP64: tl.constexpr, BLOCK: tl.constexpr):
    ct = tl.float64 if FP64 else tl.float32
    u = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    b, p, umask, c, mask, offs, off1 = _units(u, units, c0, cc, hw, S, CHANNELS_LAST)
    cplx = c >= S
    k = tl.load(par_ptr).to(ct)
    a = tl.load(q0_ptr + offs, mask=mask, other=0).to(ct)
    bq = tl.load(q1_ptr + off1, mask=mask & cplx, other=0).to(ct)
    g = tl.load(go_ptr + offs, mask=mask, other=0).to(ct)
    if NOISE:
        s = tl.load(par_ptr + 1).to(ct)
        lv = tl.load(par_ptr + 2).to(ct)
        n = _normals(index_ptr, b, p, umask, base1, base2, FP64)
        x = _cells(a, bq, cplx, k, FP64)
        r0 = s * x + lv
        root = tl.sqrt(_relu(r0) + NOISE_EPS)
        r = r0 + n * root
        active = ((r - lv) / s > 0).to(ct)
        droot = (r0 > 0).to(ct) * 0.5 / root
        g = g * (active * (1.0 + n * droot))
    e = _energy(a, bq, FP64)
    inv = tl.where(e > 0, 1.0 / tl.where(e > 0, e, 1.0), 0.0)
    f = g * k * INV_SQRT2 * inv
    ga = tl.where(cplx, f * a, g * k * (a > 0).to(ct))
    tl.store(gq0_ptr + offs, ga.to(gq0_ptr.dtype.element_ty), mask=mask)
    tl.store(gq1_ptr + off1, (f * bq).to(gq1_ptr.dtype.element_ty), mask=mask & cplx)


def _units_count(q0: torch.Tensor, channels_last: bool) -> int:
    b, c0, h, w = q0.shape
    hw = h * w
    return b * c0 * ((hw + 1) // 2) if channels_last else b * ((c0 * hw + 1) // 2)


def _params(q0: torch.Tensor, k_exc: float, noise_scale: float, noise_level: float):
    # Triton passes Python floats as float32: float64 tensors need their scalars
    # at full precision, so all scalars go through memory in the compute type.
    ct = torch.float64 if q0.dtype == torch.float64 else torch.float32
    return torch.tensor([k_exc, noise_scale, noise_level], dtype=ct, device=q0.device)


def v1_response_triton(out: torch.Tensor, q0: torch.Tensor, q1: torch.Tensor,
                       index: Optional[torch.Tensor], simple: int, k_exc: float,
                       noise_scale: float, noise_level: float, noise: bool, base1: int,
                       base2: int, channels_last: bool) -> None:
    """Launch the forward kernel writing into `out` (B, C0, H, W), q0's layout."""
    total = q0.numel()
    if total == 0:
        return
    _, c0, h, w = q0.shape
    q1p = q1 if q1.numel() else q0  # unused pointer when there are no complex cells
    idx = index if index is not None else q0  # unused pointer when noise is off
    units = _units_count(q0, channels_last)
    _v1_fwd_kernel[(triton.cdiv(units, BLOCK),)](
        out, q0, q1p, idx, _params(q0, k_exc, noise_scale, noise_level), units, c0,
        c0 - simple, h * w, simple, base1, base2, NOISE=noise, CHANNELS_LAST=channels_last,
        FP64=q0.dtype == torch.float64, BLOCK=BLOCK, num_warps=NUM_WARPS)


def v1_response_backward_triton(grad_q0: torch.Tensor, grad_q1: torch.Tensor,
                                grad_out: torch.Tensor, q0: torch.Tensor, q1: torch.Tensor,
                                index: Optional[torch.Tensor], simple: int, k_exc: float,
                                noise_scale: float, noise_level: float, noise: bool, base1: int,
                                base2: int, channels_last: bool) -> None:
    """Launch the backward kernel writing grad_q0 (like q0) and grad_q1 (like q1)."""
    total = q0.numel()
    if total == 0:
        return
    _, c0, h, w = q0.shape
    q1p = q1 if q1.numel() else q0
    gq1p = grad_q1 if grad_q1.numel() else grad_q0  # never stored to when there are no complex cells
    idx = index if index is not None else q0
    units = _units_count(q0, channels_last)
    _v1_bwd_kernel[(triton.cdiv(units, BLOCK),)](
        grad_q0, gq1p, grad_out, q0, q1p, idx, _params(q0, k_exc, noise_scale, noise_level),
        units, c0, c0 - simple, h * w, simple, base1, base2, NOISE=noise,
        CHANNELS_LAST=channels_last, FP64=q0.dtype == torch.float64, BLOCK=BLOCK,
        num_warps=NUM_WARPS)
