"""v1_response: the fused VOneNet V1 epilogue (METHODS.md section 3), forward and backward.

Given the Gabor responses of a V1 front-end, q0 (B, S + Cc, H, W) at phase phi for
all channels (S simple, then Cc complex) and q1 (B, Cc, H, W) at phi + 90 deg for
the complex channels only:

    simple  x = k_exc * relu(q0[:, :S])
    complex x = k_exc * sqrt(q0[:, S:]^2 + q1^2) / sqrt(2)
    noise:  r = s x + l;  r = r + n * sqrt(relu(r) + 1e-4);  x = relu((r - l) / s)

with s = noise_scale, l = noise_level. n is standard normal noise from the
counter-based generator (robustops.counter_rng), keyed by (seed, global sample
index, logical NCHW offset j = c*H*W + h*W + w) on the fixed stream V1_NOISE_STREAM,
by Box-Muller pairs: pair p = j // 2 draws u1 = uniform(stream 2*V1_NOISE_STREAM, p)
and u2 = uniform(stream 2*V1_NOISE_STREAM + 1, p) and gives two normals,

    R = sqrt(-2 ln u1),  n[2p] = R cos(2 pi u2),  n[2p + 1] = R sin(2 pi u2)

(one hash pair, log and sqrt per two elements). `v1_noise_normals` is the reference
definition (float64, rounded to the requested dtype). The kernels compute the
Box-Muller in float64 for float64 tensors and in float32 otherwise (within 3 ulp of
the float64 normals rounded, and about 2x faster on the CPU). A sample gets the
same noise whatever its batch, its memory layout, the backend (up to those ulp) or
the number of processes. Without noise the output is x (>= 0, so VOneNet's final
ReLU is a no-op).

One pass over the data instead of ~8 eager ones, and no noise tensor: the backward
recomputes n from the counter and saves only q0, q1 and the scalars.

Gradients: n is a constant; sqrt(relu(r) + 1e-4) is differentiated (as in VOneNet,
whose noise term stays in the graph); relu'(0) = 0; the complex cell's gradient is
0 where q0 = q1 = 0 (no NaN).

Layouts and dtypes: contiguous NCHW or channels_last (q0 and q1 alike) run as they
are and the output follows q0's memory format; anything else is made contiguous.
float32 and float64 compute in their own precision; float16/bfloat16 compute in
float32 and return their dtype.

Non-finite and extreme inputs, the same on every backend: NaN/Inf inputs are not
checked; a NaN in q0 or q1 gives NaN at its element (relu(NaN) = NaN, with or
without noise). The complex energy sqrt(q0^2 + q1^2) is computed hypot-style
(both scaled by an exact power of two when the larger is beyond 2^+-62, 2^+-510
for float64), so inputs near 1e30 (float32) give the finite energy, not inf or
NaN; the output is inf (or, through the noise, NaN) only where the cell's value
itself exceeds the compute type's range or an input is infinite.

Layers: the ops ``robustops::v1_response`` and ``robustops::v1_response_backward``
are declared in C++ (csrc/ops/v1_response.cpp, with their argument checks, the layout
handling and the autograd kernel) and run kernels registered per dispatch key
(csrc/cpu/v1_response.cpp, csrc/cuda/v1_response.cu; math in kernels/v1_response.h).
The op's ``index`` may be None with the noise on: sample b then has index b (no index
tensor is built). This file holds what Python does best beside them: the public
function (one call of ``torch.ops.robustops.v1_response``), the fake kernels, the
plain-PyTorch references (the oracle and the fallback without the extension) and the
Triton backend (robustops/triton/v1_response.py) as ``robustops::v1_response_triton``
/ ``robustops::v1_response_backward_triton``.
"""
from __future__ import annotations

import math
from typing import Optional, Union

import torch
from torch.compiler import is_compiling
from torch import Tensor

from ..arguments import require_bool, require_int, require_real, require_tensor
from .. import backend
from ..counter_rng import counter_uniform, sample_index
from .counter_rng import stream_base
from .pgd_step import _opmath

__all__ = ["v1_response", "v1_response_reference", "v1_response_backward_reference",
           "v1_noise_normals", "V1_NOISE_STREAM"]

OP = "v1_response"
BACKENDS = ("reference", "cpp", "cuda", "triton")
# Counter stream of the V1 noise ("V1" in ASCII): far from the small stream ids that
# random_init and the corruptions use, so the same seed never reuses their numbers.
V1_NOISE_STREAM = 0x5631
INV_SQRT2 = 0.70710678118654752440
NOISE_EPS = 1e-4
# v1_energy's (threshold big, threshold small, scale down, scale up), by compute type
# (False: float32, True: float64): exact powers of two (kernels/v1_response.h).
_ENERGY_SCALES = {False: (2.0 ** 62, 2.0 ** -62, 2.0 ** -66, 2.0 ** 66),
                  True: (2.0 ** 510, 2.0 ** -510, 2.0 ** -514, 2.0 ** 514)}
_M64 = (1 << 64) - 1
_M63 = 1 << 63
_FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def noise_bases(seed: int) -> tuple[int, int]:
    """The two 32-bit counter keys of the noise normals (Box-Muller's two uniforms)."""
    return stream_base(seed, 2 * V1_NOISE_STREAM), stream_base(seed, 2 * V1_NOISE_STREAM + 1)


def _memory_format(t: Tensor) -> torch.memory_format:
    if t.ndim == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


# ----------------------------------------------------------------------------- reference


def v1_noise_normals(shape, seed: int, index: Union[None, int, Tensor] = None,
                     dtype: torch.dtype = torch.float32) -> Tensor:
    """The noise normals of v1_response: the reference definition, in plain PyTorch.

    shape: (B, C, H, W); seed: any int; index: global sample indices (None: 0..B-1,
    an int offset, or a (B,) integer tensor, whose device the result takes). Element
    j = c*H*W + h*W + w of a sample belongs to Box-Muller pair p = j // 2: u1, u2 =
    counter_uniform on streams 2*V1_NOISE_STREAM and 2*V1_NOISE_STREAM + 1 at (sample
    index, p), R = sqrt(-2 ln u1), n[2p] = R cos(2 pi u2), n[2p + 1] = R sin(2 pi u2).
    Computed in float64 and rounded to dtype; returns (B, C, H, W), contiguous.
    """
    shape = tuple(int(d) for d in shape)
    if len(shape) != 4:
        raise ValueError(f"v1_noise_normals: shape must be (B, C, H, W), got {shape}")
    device = index.device if isinstance(index, Tensor) else torch.device("cpu")
    idx = sample_index(shape[0], index, device)
    numel = math.prod(shape[1:])
    pairs = (numel + 1) // 2
    u1 = counter_uniform(seed, 2 * V1_NOISE_STREAM, idx, pairs, torch.float64)
    u2 = counter_uniform(seed, 2 * V1_NOISE_STREAM + 1, idx, pairs, torch.float64)
    radius = torch.sqrt(-2.0 * torch.log(u1))
    theta = 6.283185307179586 * u2
    n = torch.stack([radius * torch.cos(theta), radius * torch.sin(theta)], dim=-1)
    return n.reshape(shape[0], 2 * pairs)[:, :numel].reshape(shape).to(dtype)


def _energy_scales(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """The power-of-two scale of v1_energy (kernels/v1_response.h) and its inverse: with
    m = max(|a|, |b|), 2^-66 / 2^66 when m > 2^62, 2^66 / 2^-66 when m < 2^-62 (float32
    compute; 2^-514 / 2^514 beyond 2^+-510 for float64), else 1 / 1."""
    big, small, down, up = _ENERGY_SCALES[a.dtype == torch.float64]
    m = torch.maximum(a.abs(), b.abs())
    one = torch.ones((), dtype=a.dtype, device=a.device)
    s = torch.where(m > big, down * one, torch.where(m < small, up * one, one))
    inv = torch.where(m > big, up * one, torch.where(m < small, down * one, one))
    return s, inv


def _energy(a: Tensor, b: Tensor) -> Tensor:
    """sqrt(a^2 + b^2) without overflow or underflow in the squares (kernels' v1_energy):
    both scaled by an exact power of two first. NaN propagates; +-inf gives +inf.

    The sqrt is guarded so that autograd gives the kernels' gradient 0 (not NaN) where
    a = b = 0; the values are unchanged (a NaN stays NaN)."""
    s, inv = _energy_scales(a, b)
    sa, sb = a * s, b * s
    e2 = sa * sa + sb * sb
    zero = e2 == 0
    return torch.where(zero, torch.zeros_like(e2),
                       torch.sqrt(torch.where(zero, torch.ones_like(e2), e2))) * inv


def _cells(a: Tensor, b: Tensor, k: float) -> Tensor:
    """x before noise, in the compute type: simple channels then complex ones."""
    s = a.shape[1] - b.shape[1]
    simple = k * torch.relu(a[:, :s])
    cplx = k * _energy(a[:, s:], b) * INV_SQRT2
    return torch.cat([simple, cplx], dim=1)


def v1_response_reference(q0: Tensor, q1: Tensor, k_exc: float = 25.0, noise_scale: float = 0.35,
                          noise_level: float = 0.07, noise: bool = True, seed: int = 0,
                          index: Optional[Tensor] = None) -> Tensor:
    """Plain-PyTorch v1_response: the oracle for every backend (no validation).

    q0: (B, S + Cc, H, W), q1: (B, Cc, H, W) floating; index: (B,) int64 global sample
    indices (needed when noise is on). Returns (B, S + Cc, H, W) in q0's dtype and
    memory format, computed in float32 (float64 for float64). Differentiable by
    torch autograd, with the kernels' gradients (0 for complex cells at q0 = q1 = 0).
    """
    ct = _opmath(q0.dtype)
    x = _cells(q0.to(ct), q1.to(ct), k_exc)
    if noise:
        n = v1_noise_normals(q0.shape, seed, index, ct)
        s, lv = noise_scale, noise_level
        r0 = s * x + lv
        r = r0 + n * torch.sqrt(torch.relu(r0) + NOISE_EPS)
        x = torch.relu((r - lv) / s)
    return x.to(q0.dtype).contiguous(memory_format=_memory_format(q0))


def v1_response_backward_reference(grad_out: Tensor, q0: Tensor, q1: Tensor, k_exc: float,
                                   noise_scale: float, noise_level: float, noise: bool,
                                   seed: int, index: Optional[Tensor]) -> tuple[Tensor, Tensor]:
    """Analytic (grad_q0, grad_q1) of v1_response in plain PyTorch (same scalars as forward).

    grad_out: (B, S + Cc, H, W). Returns tensors shaped, typed and laid out like q0, q1.
    """
    ct = _opmath(q0.dtype)
    a, b, g = q0.to(ct), q1.to(ct), grad_out.to(ct)
    s_ch = a.shape[1] - b.shape[1]
    k = k_exc
    if noise:
        n = v1_noise_normals(q0.shape, seed, index, ct)
        s, lv = noise_scale, noise_level
        r0 = s * _cells(a, b, k) + lv
        root = torch.sqrt(torch.relu(r0) + NOISE_EPS)
        r = r0 + n * root
        active = ((r - lv) / s > 0).to(ct)
        droot = (r0 > 0).to(ct) * 0.5 / root
        g = g * (active * (1.0 + n * droot))
    g_simple = g[:, :s_ch] * k * (a[:, :s_ch] > 0).to(ct)
    ac = a[:, s_ch:]
    e = _energy(ac, b)
    inv = torch.where(e > 0, 1.0 / torch.where(e > 0, e, torch.ones_like(e)), torch.zeros_like(e))
    f = g[:, s_ch:] * k * INV_SQRT2 * inv
    g0 = torch.cat([g_simple, f * ac], dim=1)
    return (g0.to(q0.dtype).contiguous(memory_format=_memory_format(q0)),
            (f * b).to(q1.dtype).contiguous(memory_format=_memory_format(q1)))


# ----------------------------------------------------------------------------- python checks


def _validate(q0, q1, k_exc, noise_scale, noise_level, noise, seed):
    """The checks of csrc/ops/v1_response.cpp (same messages), for the backends that do
    not run it (reference, triton), the fake kernel, and clearer errors for arguments
    the op's schema rejects or takes loosely (a bool for a float, an int for a bool).
    Returns the scalars as the op takes them (floats; the seed folded to int64)."""
    for name, t in (("q0", q0), ("q1", q1)):
        require_tensor("v1_response", name, t)
        if t.ndim != 4:
            raise ValueError(f"v1_response: {name} must be 4-D (B, C, H, W), got shape "
                             f"{tuple(t.shape)}")
        if t.dtype not in _FLOAT_DTYPES:
            raise ValueError(f"v1_response: {name} must be float32, float64, float16 or "
                             f"bfloat16, got {t.dtype}")
    if q1.dtype != q0.dtype:
        raise ValueError(f"v1_response: q1 has dtype {q1.dtype} but q0 has {q0.dtype}; "
                         "they must match")
    if q1.device != q0.device:
        raise ValueError(f"v1_response: q1 is on {q1.device} but q0 is on {q0.device}")
    if (q1.shape[0], q1.shape[2], q1.shape[3]) != (q0.shape[0], q0.shape[2], q0.shape[3]) \
            or q1.shape[1] > q0.shape[1]:
        raise ValueError(
            f"v1_response: q1 must be (B, Cc, H, W) with q0's B, H, W and Cc <= q0's "
            f"channels (q0 = simple then complex channels); got q0 {tuple(q0.shape)}, "
            f"q1 {tuple(q1.shape)}")
    op = "v1_response"
    k_exc = require_real(k_exc, "k_exc", where=op)
    noise_scale = require_real(noise_scale, "noise_scale", where=op)
    if noise_scale <= 0:  # the C++ op's message (a float 0.0 skips these checks)
        raise ValueError(f"v1_response: noise_scale must be > 0, got {noise_scale}")
    noise_level = require_real(noise_level, "noise_level", where=op)
    require_bool(noise, "noise", where=op)
    seed = require_int(seed, "seed", where=op)
    return k_exc, noise_scale, noise_level, _fold_seed(seed)


def _fold_seed(seed: int) -> int:
    """The seed as the op's int64 (stream_base reads it modulo 2**64 anyway)."""
    if -_M63 <= seed < _M63:
        return seed
    return ((seed & _M64) ^ _M63) - _M63


def _validate_op(q0, q1, index, k_exc, noise_scale, noise_level, noise, seed) -> None:
    """Every check of the op (_validate, and index: None or (B,) int64 on q0's device)."""
    _validate(q0, q1, k_exc, noise_scale, noise_level, noise, seed)
    if index is not None:
        if index.dtype != torch.int64 or index.ndim != 1 or index.shape[0] != q0.shape[0]:
            raise ValueError(f"v1_response: index must be an int64 tensor of shape "
                             f"({q0.shape[0]},) (one global sample index per sample), got "
                             f"{tuple(index.shape)} {index.dtype}")
        if index.device != q0.device:
            raise ValueError(f"v1_response: index is on {index.device} but q0 is on "
                             f"{q0.device}; move it with index.to(q0.device)")


# ----------------------------------------------------------------------------- fake kernels


def _fake(q0, q1, index, k_exc, noise_scale, noise_level, noise, seed):
    _validate_op(q0, q1, index, k_exc, noise_scale, noise_level, noise, seed)
    return torch.empty_like(q0)


def _fake_backward(grad_out, q0, q1, index, k_exc, noise_scale, noise_level, noise, seed):
    return torch.empty_like(q0), torch.empty_like(q1)


_OP, _OP_EAGER = backend.native_op("v1_response", {"v1_response": _fake, "v1_response_backward": _fake_backward})


# ----------------------------------------------------------------------------- triton backend


def _channels_last(*ts: Tensor) -> Optional[bool]:
    """False: all contiguous NCHW; True: all channels_last; None: copies needed."""
    if all(t.is_contiguous() for t in ts):
        return False
    if all(t.is_contiguous(memory_format=torch.channels_last) for t in ts):
        return True
    return None


def _kernel_args(q0: Tensor, q1: Tensor, index: Optional[Tensor], k_exc: float,
                 noise_scale: float, noise_level: float, noise: bool, seed: int) -> tuple:
    b1, b2 = noise_bases(seed) if noise else (0, 0)
    idx = None
    if noise:
        idx = (index.contiguous() if index is not None
               else torch.arange(q0.shape[0], device=q0.device, dtype=torch.int64))
    return (idx, q0.shape[1] - q1.shape[1], float(k_exc), float(noise_scale),
            float(noise_level), bool(noise), b1, b2)


@torch.library.custom_op("robustops::v1_response_triton", mutates_args=())
def _v1_response_triton(q0: Tensor, q1: Tensor, index: Optional[Tensor], k_exc: float,
                        noise_scale: float, noise_level: float, noise: bool,
                        seed: int) -> Tensor:
    from ..triton.v1_response import v1_response_triton
    _validate_op(q0, q1, index, k_exc, noise_scale, noise_level, noise, seed)
    out = torch.empty_like(q0)
    if out.numel() == 0:
        return out
    args = _kernel_args(q0, q1, index, k_exc, noise_scale, noise_level, noise, seed)
    cl = _channels_last(out, q0, q1)
    target = out
    if cl is None:  # neither layout: the kernels walk dense NCHW
        cl, q0, q1 = False, q0.contiguous(), q1.contiguous()
        target = torch.empty(out.shape, dtype=out.dtype, device=out.device)
    v1_response_triton(target, q0, q1, *args, cl)
    if target is not out:
        out.copy_(target)
    return out


@torch.library.custom_op("robustops::v1_response_backward_triton", mutates_args=())
def _v1_response_backward_triton(grad_out: Tensor, q0: Tensor, q1: Tensor,
                                 index: Optional[Tensor], k_exc: float, noise_scale: float,
                                 noise_level: float, noise: bool,
                                 seed: int) -> tuple[Tensor, Tensor]:
    from ..triton.v1_response import v1_response_backward_triton
    gq0, gq1 = torch.empty_like(q0), torch.empty_like(q1)
    if q0.numel() == 0:
        return gq0, gq1
    args = _kernel_args(q0, q1, index, k_exc, noise_scale, noise_level, noise, seed)
    # Autograd often hands over expanded or differently strided gradients.
    go = grad_out
    if go.dtype != q0.dtype or go.stride() != q0.stride():
        go = torch.empty_like(q0)
        go.copy_(grad_out)
    cl = _channels_last(gq0, gq1, go, q0, q1)
    t0, t1 = gq0, gq1
    if cl is None:
        cl, go, q0, q1 = False, go.contiguous(), q0.contiguous(), q1.contiguous()
        t0 = torch.empty(q0.shape, dtype=q0.dtype, device=q0.device)
        t1 = torch.empty(q1.shape, dtype=q1.dtype, device=q1.device)
    v1_response_backward_triton(t0, t1, go, q0, q1, *args, cl)
    if t0 is not gq0:
        gq0.copy_(t0)
        gq1.copy_(t1)
    return gq0, gq1


_v1_response_triton.register_fake(_fake)
_v1_response_backward_triton.register_fake(_fake_backward)


def _setup_context(ctx, inputs, output):
    q0, q1, index, k_exc, noise_scale, noise_level, noise, seed = inputs
    # Only the inputs: the noise is recomputed from the counter in backward.
    ctx.save_for_backward(q0, q1, index)
    ctx.scalars = (k_exc, noise_scale, noise_level, noise, seed)


def _backward(ctx, grad_out):
    q0, q1, index = ctx.saved_tensors
    gq0, gq1 = _v1_response_backward_triton(grad_out, q0, q1, index, *ctx.scalars)
    return gq0, gq1, None, None, None, None, None, None


_v1_response_triton.register_autograd(_backward, setup_context=_setup_context)


# ----------------------------------------------------------------------------- public API


def _index(q0: Tensor, index, noise: bool) -> Optional[Tensor]:
    """The op's index: global sample indices (B,) int64 on q0's device (validated even
    when the noise is off, and then left out of the graph)."""
    idx = sample_index(q0.shape[0], index, q0.device)
    return idx if noise else None


def v1_response(q0: Tensor, q1: Tensor, *, k_exc: float = 25.0, noise_scale: float = 0.35,
                noise_level: float = 0.07, noise: bool = True, seed: int = 0,
                index: Union[None, int, Tensor] = None) -> Tensor:
    """Fused V1 epilogue: simple/complex cells, gain k_exc and counter-based neuronal noise.

    q0: (B, S + Cc, H, W) phase-phi Gabor responses (S simple channels, then Cc complex);
    q1: (B, Cc, H, W) quadrature responses of the complex channels (Cc may be 0), same
    dtype/device/layout. noise_scale (> 0), noise_level: the noise's s and l; seed: any
    int; index: global sample indices (None: 0..B-1, an int offset, or a (B,) tensor).
    Returns (B, S + Cc, H, W) in q0's dtype and memory format; differentiable in q0, q1.
    """
    if (type(k_exc) is not float or type(noise_scale) is not float
            or type(noise_level) is not float or type(noise) is not bool
            or type(seed) is not int or not -_M63 <= seed < _M63):
        # Anything but the common call: convert (ints to floats, a big seed folded), or
        # raise what the schema would take loosely (a bool for a float, an int for a bool).
        k_exc, noise_scale, noise_level, seed = _validate(q0, q1, k_exc, noise_scale,
                                                          noise_level, noise, seed)
    try:
        idx = None if index is None else _index(q0, index, noise)
        name = backend.python_path(q0, OP, BACKENDS)
        if name is None:
            return (_OP if is_compiling() else _OP_EAGER)(q0, q1, idx, k_exc, noise_scale, noise_level, noise, seed)
    except (TypeError, AttributeError, RuntimeError):
        _validate(q0, q1, k_exc, noise_scale, noise_level, noise, seed)  # a clearer message
        raise
    if name == "triton":
        return _v1_response_triton(q0, q1, idx, k_exc, noise_scale, noise_level, noise, seed)
    _validate_op(q0, q1, idx, k_exc, noise_scale, noise_level, noise, seed)
    if noise and idx is None:
        idx = torch.arange(q0.shape[0], device=q0.device, dtype=torch.int64)
    return v1_response_reference(q0, q1, k_exc, noise_scale, noise_level, noise, seed, idx)
