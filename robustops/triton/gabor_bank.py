"""Triton kernels of gabor_bank: the math of kernels/gabor_bank.h, restated in Triton.

Launcher contract as for the C++ kernels (see csrc/gabor_bank.h): the five
parameters (F,) contiguous of one dtype; out / grad_out (F, k, k) contiguous.
One program per filter; like the C++ kernels, everything is computed in float64
and rounded once on store.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

# One pinned config: autotuning needs a GPU, and the interpreter runs ~1 ms per
# program instance. 1024 covers a 25 x 25 filter in one chunk.
BLOCK = 1024
NUM_WARPS = 4
# Globals in @triton.jit must be constexpr; keep a tensor on the left of every product
# with it (constexpr * tensor wraps the tensor in a constexpr under the interpreter).
TWO_PI = tl.constexpr(6.283185307179586)


@triton.jit
def _coeffs(f_ptr, sx_ptr, sy_ptr, th_ptr, ph_ptr, i):
    f = tl.load(f_ptr + i).to(tl.float64)
    sx = tl.load(sx_ptr + i).to(tl.float64)
    sy = tl.load(sy_ptr + i).to(tl.float64)
    th = tl.load(th_ptr + i).to(tl.float64)
    ph = tl.load(ph_ptr + i).to(tl.float64)
    inv_sx = 1.0 / sx
    inv_sy = 1.0 / sy
    norm = 1.0 / (sx * TWO_PI * sy)
    return tl.cos(th), tl.sin(th), inv_sx, inv_sy, norm, f * TWO_PI, ph


@triton.jit
def _offsets(start, kk, k, w, BLOCK: tl.constexpr):
    j = start + tl.arange(0, BLOCK)
    m = j < kk
    r = j // k
    x = (r - w).to(tl.float64)
    y = (j - r * k - w).to(tl.float64)
    return j, m, x, y


@triton.jit
def _gabor_bank_kernel(out_ptr, f_ptr, sx_ptr, sy_ptr, th_ptr, ph_ptr, k,
                       BLOCK: tl.constexpr):
    i = tl.program_id(0).to(tl.int64)
    kk = k * k
    w = k // 2
    cos_t, sin_t, inv_sx, inv_sy, norm, two_pi_f, ph = _coeffs(f_ptr, sx_ptr, sy_ptr, th_ptr,
                                                               ph_ptr, i)
    for start in range(0, kk, BLOCK):
        j, m, x, y = _offsets(start, kk, k, w, BLOCK)
        u = x * cos_t + y * sin_t
        v = y * cos_t - x * sin_t
        e = tl.exp(-0.5 * (u * u * (inv_sx * inv_sx) + v * v * (inv_sy * inv_sy)))
        g = e * norm * tl.cos(two_pi_f * u + ph)
        tl.store(out_ptr + i * kk + j, g.to(out_ptr.dtype.element_ty), mask=m)


@triton.jit
def _gabor_bank_backward_kernel(go_ptr, f_ptr, sx_ptr, sy_ptr, th_ptr, ph_ptr, gf_ptr, gsx_ptr,
                                gsy_ptr, gth_ptr, gph_ptr, k, BLOCK: tl.constexpr):
    # One program per filter: five sums over its k*k elements.
    i = tl.program_id(0).to(tl.int64)
    kk = k * k
    w = k // 2
    cos_t, sin_t, inv_sx, inv_sy, norm, two_pi_f, ph = _coeffs(f_ptr, sx_ptr, sy_ptr, th_ptr,
                                                               ph_ptr, i)
    inv_sx2 = inv_sx * inv_sx
    inv_sy2 = inv_sy * inv_sy
    acc_f = tl.zeros([BLOCK], dtype=tl.float64)
    acc_sx = tl.zeros([BLOCK], dtype=tl.float64)
    acc_sy = tl.zeros([BLOCK], dtype=tl.float64)
    acc_th = tl.zeros([BLOCK], dtype=tl.float64)
    acc_ph = tl.zeros([BLOCK], dtype=tl.float64)
    for start in range(0, kk, BLOCK):
        j, m, x, y = _offsets(start, kk, k, w, BLOCK)
        go = tl.load(go_ptr + i * kk + j, mask=m, other=0).to(tl.float64)
        u = x * cos_t + y * sin_t
        v = y * cos_t - x * sin_t
        en = tl.exp(-0.5 * (u * u * inv_sx2 + v * v * inv_sy2)) * norm
        arg = two_pi_f * u + ph
        g = en * tl.cos(arg)
        d_ph = -en * tl.sin(arg)
        acc_f += go * d_ph * TWO_PI * u
        acc_sx += go * g * (u * u * inv_sx2 - 1.0) * inv_sx
        acc_sy += go * g * (v * v * inv_sy2 - 1.0) * inv_sy
        acc_th += go * (d_ph * two_pi_f * v - g * u * v * (inv_sx2 - inv_sy2))
        acc_ph += go * d_ph
    ty = gf_ptr.dtype.element_ty
    tl.store(gf_ptr + i, tl.sum(acc_f, axis=0).to(ty))
    tl.store(gsx_ptr + i, tl.sum(acc_sx, axis=0).to(ty))
    tl.store(gsy_ptr + i, tl.sum(acc_sy, axis=0).to(ty))
    tl.store(gth_ptr + i, tl.sum(acc_th, axis=0).to(ty))
    tl.store(gph_ptr + i, tl.sum(acc_ph, axis=0).to(ty))


def gabor_bank_triton(out: torch.Tensor, frequency: torch.Tensor, sigma_x: torch.Tensor,
                      sigma_y: torch.Tensor, theta: torch.Tensor, phase: torch.Tensor) -> None:
    """Write the (F, k, k) bank into `out` from the five (F,) parameters."""
    n, k = out.shape[0], out.shape[1]
    if out.numel() == 0:
        return
    _gabor_bank_kernel[(n,)](out, frequency, sigma_x, sigma_y, theta, phase, k, BLOCK=BLOCK,
                             num_warps=NUM_WARPS)


def gabor_bank_backward_triton(grad_out: torch.Tensor, frequency: torch.Tensor,
                               sigma_x: torch.Tensor, sigma_y: torch.Tensor, theta: torch.Tensor,
                               phase: torch.Tensor, grads: tuple[torch.Tensor, ...]) -> None:
    """Write the five (F,) parameter gradients of gabor_bank into `grads`."""
    n, k = grad_out.shape[0], grad_out.shape[1]
    if n == 0:
        return
    _gabor_bank_backward_kernel[(n,)](grad_out, frequency, sigma_x, sigma_y, theta, phase,
                                      *grads, k, BLOCK=BLOCK, num_warps=NUM_WARPS)
