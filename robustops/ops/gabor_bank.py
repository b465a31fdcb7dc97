"""gabor_bank: a bank of Gabor filters from per-filter parameters, differentiable in all of them.

    g_i[r, c] = exp(-(u^2 / sx_i^2 + v^2 / sy_i^2) / 2) / (2 pi sx_i sy_i) * cos(2 pi f_i u + phase_i)
    u = x cos(theta_i) + y sin(theta_i),   v = -x sin(theta_i) + y cos(theta_i)
    x = r - k // 2 (row offset),           y = c - k // 2 (column offset)

exactly VOneNet's ``gabor_kernel`` (dicarlolab/vonenet, vonenet/utils.py), whose
``torch.meshgrid(grid, grid)`` 'ij' indexing makes x run down the rows. Units:
frequency in cycles/pixel, sigma_x / sigma_y in pixels, theta and phase in radians
(robustops.nn.gabor_parameters converts VOneNet's biological units).

All backends compute in float64 and round once to the parameters' dtype: the
cosine's argument reaches ~50 rad for fine filters, where float32 arithmetic
loses ~1e-5 relative, and a whole VOneNet bank is only 512 x 25 x 25 values.

Layers: the ops ``robustops::gabor_bank`` and ``robustops::gabor_bank_backward``
(which returns the five (F,) parameter gradients in one pass per filter) are declared
in C++ (csrc/ops/gabor_bank.cpp, with their argument and value checks and the autograd
kernel) and run kernels registered per dispatch key (csrc/cpu/gabor_bank.cpp,
csrc/cuda/gabor_bank.cu; math in kernels/gabor_bank.h). This file holds what Python
does best beside them: the public function (one call of ``torch.ops.robustops.gabor_bank``),
the fake kernels, the plain-PyTorch reference (the oracle and the fallback without the
extension) and the Triton backend (robustops/triton/gabor_bank.py) as
``robustops::gabor_bank_triton`` / ``robustops::gabor_bank_backward_triton``.
"""
from __future__ import annotations

import math

import torch
from torch.compiler import is_compiling
from torch import Tensor

from ..arguments import require_int, require_tensor
from .. import backend

__all__ = ["gabor_bank", "gabor_bank_reference"]

OP = "gabor_bank"
BACKENDS = ("reference", "cpp", "cuda", "triton")
PARAM_NAMES = ("frequency", "sigma_x", "sigma_y", "theta", "phase")
TWO_PI = 2.0 * math.pi  # 6.283185307179586, the constant of kernels/gabor_bank.h


# ----------------------------------------------------------------------------- reference


def _terms(frequency: Tensor, sigma_x: Tensor, sigma_y: Tensor, theta: Tensor, phase: Tensor,
           ksize: int):
    """The float64 intermediates of kernels/gabor_bank.h, broadcast to (F, k, k)."""
    f, sx, sy, th, ph = (t.to(torch.float64)[:, None, None]
                         for t in (frequency, sigma_x, sigma_y, theta, phase))
    w = ksize // 2
    grid = torch.arange(-w, w + 1, dtype=torch.float64, device=frequency.device)
    x, y = grid[:, None], grid[None, :]  # x: row offset, y: column offset ('ij' meshgrid)
    cos_t, sin_t = torch.cos(th), torch.sin(th)
    u = x * cos_t + y * sin_t
    v = y * cos_t - x * sin_t
    inv_sx, inv_sy = 1.0 / sx, 1.0 / sy
    inv_sx2, inv_sy2 = inv_sx * inv_sx, inv_sy * inv_sy
    en = torch.exp(-0.5 * (u * u * inv_sx2 + v * v * inv_sy2)) * (1.0 / (TWO_PI * sx * sy))
    arg = TWO_PI * f * u + ph
    return u, v, en, arg, inv_sx, inv_sy, inv_sx2, inv_sy2, TWO_PI * f


def gabor_bank_reference(frequency: Tensor, sigma_x: Tensor, sigma_y: Tensor, theta: Tensor,
                         phase: Tensor, ksize: int) -> Tensor:
    """Plain-PyTorch gabor_bank: the oracle for every backend (no validation).

    Five (F,) float tensors -> (F, ksize, ksize) of their dtype, computed in float64.
    Differentiable by autograd (the tests use that as a second oracle for the backward).
    """
    u, v, en, arg, *_ = _terms(frequency, sigma_x, sigma_y, theta, phase, ksize)
    return (en * torch.cos(arg)).to(frequency.dtype)


def _gabor_bank_backward_reference(grad_out: Tensor, frequency: Tensor, sigma_x: Tensor,
                                   sigma_y: Tensor, theta: Tensor, phase: Tensor):
    """Analytic (F,) gradients wrt (frequency, sigma_x, sigma_y, theta, phase), in float64."""
    ksize = grad_out.shape[-1]
    u, v, en, arg, inv_sx, inv_sy, inv_sx2, inv_sy2, two_pi_f = _terms(
        frequency, sigma_x, sigma_y, theta, phase, ksize)
    go = grad_out.to(torch.float64)
    g = en * torch.cos(arg)
    d_phase = -en * torch.sin(arg)
    parts = (d_phase * TWO_PI * u,                                     # d/df
             g * (u * u * inv_sx2 - 1.0) * inv_sx,                     # d/dsigma_x
             g * (v * v * inv_sy2 - 1.0) * inv_sy,                     # d/dsigma_y
             d_phase * two_pi_f * v - g * u * v * (inv_sx2 - inv_sy2),  # d/dtheta
             d_phase)                                                  # d/dphase
    return tuple((go * p).sum((1, 2)).to(frequency.dtype) for p in parts)


# ----------------------------------------------------------------------------- python checks


def _validate(params: tuple, ksize) -> None:
    """The argument checks of csrc/ops/gabor_bank.cpp (same messages), for the backends
    that do not run it (reference, triton), the fake kernel, and clearer errors for
    arguments the op's schema rejects."""
    for name, t in zip(PARAM_NAMES, params):
        require_tensor("gabor_bank", name, t, "a 1-D float tensor (one value per filter)")
        if t.dtype not in (torch.float32, torch.float64):
            raise ValueError(f"gabor_bank: {name} has dtype {t.dtype}; the parameters must be "
                             "float32 or float64 (the filters get their dtype)")
        if t.ndim != 1:
            raise ValueError(f"gabor_bank: {name} must be 1-D (F,), one value per filter, got "
                             f"shape {tuple(t.shape)}")
    first = params[0]
    for name, t in zip(PARAM_NAMES[1:], params[1:]):
        if t.shape != first.shape:
            raise ValueError(f"gabor_bank: {name} has {t.shape[0]} values but frequency has "
                             f"{first.shape[0]}; every parameter needs one value per filter")
        if t.dtype != first.dtype:
            raise ValueError(f"gabor_bank: {name} has dtype {t.dtype} but frequency has "
                             f"{first.dtype}; the parameters must share one dtype")
        if t.device != first.device:
            raise ValueError(f"gabor_bank: {name} is on {t.device} but frequency is on "
                             f"{first.device}; the parameters must share one device")
    require_int(ksize, "ksize", where="gabor_bank", what="an odd int >= 1")
    if ksize < 1 or ksize % 2 == 0:
        raise ValueError(f"gabor_bank: ksize must be an odd int >= 1 (the filter is centred "
                         f"on a pixel), got {ksize}")


def _check_values(frequency: Tensor, sigma_x: Tensor, sigma_y: Tensor, theta: Tensor,
                  phase: Tensor) -> None:
    """Finite parameters and sigma > 0, as the C++ kernels check them (same messages).

    One flag is read back on every device: on a GPU that is one small sync per bank
    (a bank is built once per model, or once per step when learned), and it gives a
    clear ValueError where an async device assert would poison the CUDA context.
    """
    params = (frequency, sigma_x, sigma_y, theta, phase)
    ok = torch.isfinite(torch.stack([t.detach() for t in params])).all()
    ok = ok & (sigma_x > 0).all() & (sigma_y > 0).all()
    if bool(ok):
        return
    for name, t in zip(PARAM_NAMES, params):
        bad = ~torch.isfinite(t)
        rule = "finite"
        if name.startswith("sigma"):
            bad |= t <= 0
            rule = "finite and > 0"
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            raise ValueError(f"gabor_bank: {name} must be {rule}; {name}[{i}] = {t[i].item()} "
                             f"({int(bad.sum())} of {t.numel()} values are bad)")


# ----------------------------------------------------------------------------- fake kernels


def _fake(frequency, sigma_x, sigma_y, theta, phase, ksize):
    _validate((frequency, sigma_x, sigma_y, theta, phase), ksize)
    return frequency.new_empty((frequency.shape[0], ksize, ksize))


def _fake_backward(grad_out, frequency, sigma_x, sigma_y, theta, phase):
    return tuple(torch.empty_like(frequency, memory_format=torch.contiguous_format)
                 for _ in range(5))


_OP, _OP_EAGER = backend.native_op("gabor_bank", {
    "gabor_bank": _fake,
    "gabor_bank_backward": _fake_backward,
})


# ----------------------------------------------------------------------------- triton backend


@torch.library.custom_op("robustops::gabor_bank_triton", mutates_args=())
def _gabor_bank_triton(frequency: Tensor, sigma_x: Tensor, sigma_y: Tensor, theta: Tensor,
                       phase: Tensor, ksize: int) -> Tensor:
    from ..triton.gabor_bank import gabor_bank_triton
    params = (frequency, sigma_x, sigma_y, theta, phase)
    _validate(params, ksize)
    _check_values(*params)
    out = torch.empty((frequency.shape[0], ksize, ksize), dtype=frequency.dtype,
                      device=frequency.device)
    gabor_bank_triton(out, *[t.contiguous() for t in params])
    return out


@torch.library.custom_op("robustops::gabor_bank_backward_triton", mutates_args=())
def _gabor_bank_backward_triton(grad_out: Tensor, frequency: Tensor, sigma_x: Tensor,
                                sigma_y: Tensor, theta: Tensor, phase: Tensor
                                ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    from ..triton.gabor_bank import gabor_bank_backward_triton
    params = [t.contiguous() for t in (frequency, sigma_x, sigma_y, theta, phase)]
    go = grad_out.to(frequency.dtype).contiguous()
    grads = tuple(torch.empty_like(params[0]) for _ in range(5))
    gabor_bank_backward_triton(go, *params, grads)
    return grads


_gabor_bank_triton.register_fake(_fake)
_gabor_bank_backward_triton.register_fake(_fake_backward)


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:5])


def _backward(ctx, grad_out):
    grads = _gabor_bank_backward_triton(grad_out, *ctx.saved_tensors)
    return (*grads, None)  # ksize gets no gradient


_gabor_bank_triton.register_autograd(_backward, setup_context=_setup_context)


# ----------------------------------------------------------------------------- public API


def gabor_bank(frequency: Tensor, sigma_x: Tensor, sigma_y: Tensor, theta: Tensor,
               phase: Tensor, ksize: int) -> Tensor:
    """A bank of F Gabor filters, (F, ksize, ksize), differentiable in all five parameters.

    frequency: (F,) cycles/pixel; sigma_x, sigma_y: (F,) envelope widths in pixels (> 0)
    along the carrier (x') and across it (y'); theta: (F,) orientation in radians; phase:
    (F,) carrier phase in radians. All float32 or float64 (one dtype, one device), finite.
    ksize: odd int >= 1. Returns the parameters' dtype; filter i equals VOneNet's
    gabor_kernel(frequency[i], sigma_x[i], sigma_y[i], theta[i], phase[i], ksize).
    """
    if type(ksize) is not int:  # the schema's int takes a bool
        _validate((frequency, sigma_x, sigma_y, theta, phase), ksize)
    try:
        name = backend.python_path(frequency, OP, BACKENDS)
        if name is None:
            return (_OP if is_compiling() else _OP_EAGER)(frequency, sigma_x, sigma_y, theta, phase, ksize)
    except (TypeError, AttributeError, RuntimeError):
        _validate((frequency, sigma_x, sigma_y, theta, phase), ksize)  # a clearer message
        raise
    if name == "triton":
        return _gabor_bank_triton(frequency, sigma_x, sigma_y, theta, phase, ksize)
    _validate((frequency, sigma_x, sigma_y, theta, phase), ksize)
    _check_values(frequency, sigma_x, sigma_y, theta, phase)
    return gabor_bank_reference(frequency, sigma_x, sigma_y, theta, phase, ksize)
