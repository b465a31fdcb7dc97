"""pgd_step: one fused projected-gradient step on an adversarial batch.

    x_new = clamp(project(x + alpha * direction(grad), x_nat, eps), lo, hi)

- ``norm="linf"``: direction = sign(grad); projection clips to [x_nat - eps, x_nat + eps].
- ``norm="l2"``: direction = grad / ||grad||_2 per sample (a zero gradient gives no
  step); projection onto the L2 ball of radius eps around x_nat, per sample.

Non-finite gradients (documented, tested): a NaN gradient entry never moves its
pixel (L-inf: sign(NaN) = 0; L2: NaN and +-Inf entries count as 0 in the norm
and in the direction, since g / ||g|| is undefined for them). L-inf moves a
+-Inf entry by +-alpha like any other sign. NaN/Inf in ``x`` or ``x_nat`` raise
ValueError on the CPU backends (the cpp kernel checks x, x_nat and the result for
free while it writes; an infinite x is caught although the projection would map it
to a finite x_nat +- eps); the GPU backends do not synchronise to check.

Layers: the ops ``robustops::pgd_step``, ``robustops::pgd_step_`` (in place) and
``robustops::pgd_step_backward`` are declared in C++ (csrc/ops/pgd_step.cpp, with
their argument checks and autograd kernels) and run kernels registered per
dispatch key (csrc/cpu/pgd_step.cpp, csrc/cuda/pgd_step.cu; math in
kernels/pgd_step.h). This file holds what Python does best beside them: the
public functions (one call of ``torch.ops.robustops.pgd_step``), the fake kernels,
the plain-PyTorch reference (the oracle of every test and the fallback without
the extension), and the Triton backend (robustops/triton/pgd_step.py) as
``robustops::pgd_step_triton``.
"""
from __future__ import annotations

import math
from numbers import Real
from typing import Optional, Union

import torch
from torch.compiler import is_compiling
from torch import Tensor

from ..arguments import require_real, require_tensor
from .. import backend

__all__ = ["pgd_step", "pgd_step_", "pgd_step_reference", "normalize_norm"]

OP = "pgd_step"
BACKENDS = ("reference", "cpp", "cuda", "triton")
Scalar = Union[float, Tensor]

_NORM_ALIASES = {"linf": "linf", "inf": "linf", "l_inf": "linf", "l-inf": "linf",
                 "l2": "l2", "2": "l2"}


def normalize_norm(norm) -> str:
    """'linf' or 'l2' from any common spelling (\"Linf\", \"inf\", float('inf'), 2, \"L2\")."""
    if norm == "linf" or norm == "l2":
        return norm
    if isinstance(norm, Real) and not isinstance(norm, bool):
        if math.isinf(norm):
            return "linf"
        if norm == 2:
            return "l2"
    elif isinstance(norm, str) and norm.strip().lower() in _NORM_ALIASES:
        return _NORM_ALIASES[norm.strip().lower()]
    raise ValueError(f"norm must be 'linf' or 'l2' (or inf / 2), got {norm!r}")


def _opmath(dtype: torch.dtype) -> torch.dtype:
    # Half and bfloat16 images compute in float32, as the kernels do.
    return torch.float64 if dtype == torch.float64 else torch.float32


def _per_sample(v: Scalar, batch: int, ndim: int, dtype: torch.dtype, device) -> Tensor:
    """Broadcastable (B, 1, ..., 1) tensor from a float or a (B,) tensor."""
    if isinstance(v, Tensor):
        return v.to(device=device, dtype=dtype).expand(batch).reshape((batch,) + (1,) * (ndim - 1))
    return torch.tensor(float(v), dtype=dtype, device=device)


def _row_dot(a: Tensor, b: Tensor) -> Tensor:
    """Per-sample dot product, kept broadcastable: (B, 1, ..., 1)."""
    return (a * b).flatten(1).sum(1).reshape((a.shape[0],) + (1,) * (a.ndim - 1))


def _finite_or_zero(g: Tensor) -> Tensor:
    return torch.where(torch.isfinite(g), g, torch.zeros((), dtype=g.dtype, device=g.device))


def pgd_step_reference(x: Tensor, x_nat: Tensor, grad: Tensor, eps: Scalar, alpha: Scalar,
                       norm: str = "linf", lo: float = 0.0, hi: float = 1.0) -> Tensor:
    """Plain-PyTorch pgd_step: the oracle for every backend (no validation).

    x, x_nat, grad: (B, ...) floating; eps, alpha: floats or (B,) tensors.
    Returns a new tensor with x's dtype, computed in float32 (float64 for float64).
    """
    norm = normalize_norm(norm)
    ct = _opmath(x.dtype)
    b, nd = x.shape[0], x.ndim
    xc, xn, g = x.to(ct), x_nat.to(ct), grad.to(ct)
    e = _per_sample(eps, b, nd, ct, x.device)
    a = _per_sample(alpha, b, nd, ct, x.device)
    if norm == "linf":
        v = xc + a * torch.sign(torch.nan_to_num(g, nan=0.0, posinf=1.0, neginf=-1.0))
        v = torch.minimum(torch.maximum(v, xn - e), xn + e)
    else:
        gf = _finite_or_zero(g)
        g_norm = gf.flatten(1).norm(dim=1).reshape((b,) + (1,) * (nd - 1))
        scale = torch.where(g_norm > 0, a / g_norm, torch.zeros_like(g_norm))
        d = xc + scale * gf - xn
        d_norm = d.flatten(1).norm(dim=1).reshape(g_norm.shape)
        shrink = torch.where(d_norm > e, e / d_norm, torch.ones_like(d_norm))
        v = xn + shrink * d
    return v.clamp(lo, hi).to(x.dtype)


def _pgd_step_backward_reference(grad_out: Tensor, x: Tensor, x_nat: Tensor, grad: Tensor,
                                 eps: Scalar, alpha: Scalar, norm: str, lo: float, hi: float):
    """Analytic (grad_x, grad_x_nat, grad_grad) of pgd_step; ties go to the clamped side."""
    ct = _opmath(x.dtype)
    b, nd = x.shape[0], x.ndim
    go, xc, xn, g = grad_out.to(ct), x.to(ct), x_nat.to(ct), grad.to(ct)
    e = _per_sample(eps, b, nd, ct, x.device)
    a = _per_sample(alpha, b, nd, ct, x.device)
    if norm == "linf":
        v0 = xc + a * torch.sign(torch.nan_to_num(g, nan=0.0, posinf=1.0, neginf=-1.0))
        inside = (v0 > xn - e) & (v0 < xn + e)
        v1 = torch.where(inside, v0, torch.minimum(torch.maximum(v0, xn - e), xn + e))
        gp = go * ((v1 > lo) & (v1 < hi))
        gx = gp * inside
        out = (gx, gp - gx, torch.zeros_like(g))  # sign() has zero derivative
    else:
        gf = _finite_or_zero(g)
        g_norm = gf.flatten(1).norm(dim=1).reshape((b,) + (1,) * (nd - 1))
        safe_g = torch.where(g_norm > 0, g_norm, torch.ones_like(g_norm))
        u = gf / safe_g
        y = xc + torch.where(g_norm > 0, a, torch.zeros_like(a)) * u
        d = y - xn
        d_norm = d.flatten(1).norm(dim=1).reshape(g_norm.shape)
        outside = d_norm > e
        safe_d = torch.where(outside, d_norm, torch.ones_like(d_norm))
        shrink = torch.where(outside, e / safe_d, torch.ones_like(d_norm))
        p = xn + shrink * d
        gp = go * ((p > lo) & (p < hi))
        dhat = d / safe_d
        gd = torch.where(outside, shrink * (gp - _row_dot(gp, dhat) * dhat), gp)
        gg = (a / safe_g) * (gd - _row_dot(gd, u) * u)
        gg = torch.where((g_norm > 0) & torch.isfinite(g), gg, torch.zeros_like(gg))
        out = (gd, gp - gd, gg)
    return tuple(t.to(x.dtype) for t in out[:2]) + (out[2].to(grad.dtype),)


# ----------------------------------------------------------------------------- python checks


def _check_tensors(x, x_nat, grad) -> None:
    for name, t in (("x", x), ("x_nat", x_nat), ("grad", grad)):
        require_tensor("pgd_step", name, t)


def _split_scalar(v, name: str, op: str = "pgd_step") -> tuple[float, Optional[Tensor]]:
    """eps/alpha as (float, None) or (0.0, per-sample tensor); the op checks the values."""
    if isinstance(v, Tensor):
        return 0.0, v
    # finite=False: _check_scalar and the op check the value with their own message.
    return require_real(v, name, where=op, finite=False, what="a float or a (B,) tensor"), None


def _arguments(eps, alpha, norm):
    """(eps, alpha, eps_t, alpha_t, norm) as the op's schema takes them."""
    if type(eps) is float and type(alpha) is float and (norm == "linf" or norm == "l2"):
        return eps, alpha, None, None, norm  # the attack loops' call: nothing to convert
    eps, eps_t = _split_scalar(eps, "eps")
    alpha, alpha_t = _split_scalar(alpha, "alpha")
    return eps, alpha, eps_t, alpha_t, normalize_norm(norm)


def _check_per_sample(v: Optional[Tensor], name: str, batch: int, device, op: str = "pgd_step",
                      x_name: str = "x") -> None:
    if v is None:
        return
    if not v.is_floating_point():
        raise TypeError(f"{op}: {name} must be a float or a floating (B,) tensor, "
                        f"got a {v.dtype} tensor")
    if v.ndim > 1 or (v.ndim == 1 and v.shape[0] != batch):
        raise ValueError(f"{op}: per-sample {name} must have shape ({batch},) to match "
                         f"the batch, got {tuple(v.shape)}")
    if v.device != device:
        raise ValueError(f"{op}: {name} is on {v.device} but {x_name} is on {device}; "
                         f"move it with {name}.to({x_name}.device)")


def _check_scalar(v, name: str, batch: int, device, op: str = "pgd_step",
                  x_name: str = "x") -> tuple[float, Optional[Tensor]]:
    """Split eps/alpha into (float, None) or (0.0, per-sample tensor), with clear errors
    (the per-sample tensor's values are checked by _per_sample_values)."""
    f, t = _split_scalar(v, name, op)
    if t is None and (not math.isfinite(f) or f < 0):
        raise ValueError(f"{op}: {name} must be finite and >= 0, got {f}")
    _check_per_sample(t, name, batch, device, op, x_name)
    return f, t


def _validate(x: Tensor, x_nat: Tensor, grad: Tensor, eps: float, alpha: float,
              eps_t: Optional[Tensor], alpha_t: Optional[Tensor], lo: float, hi: float,
              norm: str) -> None:
    """The checks of csrc/ops/pgd_step.cpp, for the backends that do not run it
    (reference, triton) and for the fake kernel (same messages)."""
    _check_tensors(x, x_nat, grad)
    for name, t in (("x", x), ("x_nat", x_nat), ("grad", grad)):
        if not t.is_floating_point():
            raise TypeError(f"pgd_step: {name} has dtype {t.dtype}; images must be floating "
                            "point in [lo, hi] (e.g. x.float() / 255 for uint8 images)")
    if x.ndim < 1:
        raise ValueError("pgd_step: x must have a leading batch dimension, got a 0-d tensor")
    for name, t in (("x_nat", x_nat), ("grad", grad)):
        if t.shape != x.shape:
            raise ValueError(f"pgd_step: {name} has shape {tuple(t.shape)} but x has "
                             f"{tuple(x.shape)}; they must match")
        if t.device != x.device:
            raise ValueError(f"pgd_step: {name} is on {t.device} but x is on {x.device}; "
                             f"move it with {name}.to(x.device)")
    if x_nat.dtype != x.dtype:
        raise TypeError(f"pgd_step: x_nat has dtype {x_nat.dtype} but x has {x.dtype}; "
                        "they must match (the gradient may differ, it is cast)")
    if x.shape[0] == 0 or x.numel() == 0:
        raise ValueError(f"pgd_step: empty batch (x has shape {tuple(x.shape)}); "
                         "skip the step when there is nothing to attack")
    normalize_norm(norm)
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise ValueError(f"pgd_step: need finite lo <= hi, got lo={lo}, hi={hi}")
    for name, v in (("eps", eps), ("alpha", alpha)):
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"pgd_step: {name} must be finite and >= 0, got {v}")
    _check_per_sample(eps_t, "eps", x.shape[0], x.device)
    _check_per_sample(alpha_t, "alpha", x.shape[0], x.device)


def _per_sample_values(t: Optional[Tensor], name: str, x: Tensor,
                       op: str = "pgd_step") -> Optional[Tensor]:
    """(B,) contiguous in the compute type, its values checked (CPU: read; GPU: async assert)."""
    if t is None:
        return None
    t = t.to(dtype=_opmath(x.dtype))
    if t.ndim == 0:
        t = t.expand(x.shape[0])
    t = t.contiguous()
    ok = torch.isfinite(t).all() & (t >= 0).all()
    if t.device.type == "cpu":
        if not bool(ok):
            raise ValueError(f"{op}: per-sample {name} must be finite and >= 0, got "
                             f"min {t.min().item()} (NaN present: {bool(torch.isnan(t).any())})")
    else:
        what = "eps/alpha" if op == "pgd_step" else name  # pgd_step: the C++ op's message
        torch._assert_async(ok, f"{op}: per-sample {what} must be finite and >= 0")
    return t


def _non_finite_error() -> ValueError:
    return ValueError("pgd_step: x or x_nat contains NaN or Inf (the result is not finite). "
                      "Check the images given to the attack (and lo/hi, eps, alpha); NaN "
                      "gradients are fine, they leave pixels in place.")


# ----------------------------------------------------------------------------- fake kernels


def _fake(x, x_nat, grad, eps, alpha, eps_t, alpha_t, lo, hi, norm):
    _validate(x, x_nat, grad, eps, alpha, eps_t, alpha_t, lo, hi, norm)
    return torch.empty_like(x)


def _fake_inplace(x, x_nat, grad, eps, alpha, eps_t, alpha_t, lo, hi, norm):
    _validate(x, x_nat, grad, eps, alpha, eps_t, alpha_t, lo, hi, norm)


def _fake_backward(grad_out, x, x_nat, grad, eps, alpha, eps_t, alpha_t, lo, hi, norm):
    return (torch.empty(x.shape, dtype=x.dtype, device=x.device),
            torch.empty(x.shape, dtype=x.dtype, device=x.device),
            torch.empty(grad.shape, dtype=grad.dtype, device=grad.device))


_OP, _OP_EAGER = backend.native_op("pgd_step", {
    "pgd_step": _fake, "pgd_step_": _fake_inplace, "pgd_step_backward": _fake_backward})
_OP_INPLACE, _OP_INPLACE_EAGER = backend.native_op("pgd_step_", {})


# ----------------------------------------------------------------------------- triton backend


def _triton_into(out: Tensor, x: Tensor, x_nat: Tensor, grad: Tensor, eps: float, alpha: float,
                 eps_t: Optional[Tensor], alpha_t: Optional[Tensor], lo: float, hi: float,
                 norm: str) -> None:
    """Write pgd_step(x, ...) into `out` (which may be x) with the Triton kernels."""
    from ..triton.pgd_step import pgd_step_triton
    _validate(x, x_nat, grad, eps, alpha, eps_t, alpha_t, lo, hi, norm)
    eps_t = _per_sample_values(eps_t, "eps", x)
    alpha_t = _per_sample_values(alpha_t, "alpha", x)
    # The kernels walk memory linearly, one sample block at a time: give them dense,
    # contiguous operands that do not share out's memory.
    target = out if out.is_contiguous() else torch.empty_like(out, memory_format=torch.contiguous_format)
    xs = x.contiguous() if x.data_ptr() != target.data_ptr() else x
    xns = x_nat.contiguous().clone() if x_nat.untyped_storage().data_ptr() == target.untyped_storage().data_ptr() else x_nat.contiguous()
    gs = grad.to(x.dtype).contiguous()
    # x itself is checked before the step: the projection maps an infinite x to a finite
    # x_nat +- eps, and in place x is overwritten.
    cpu = x.device.type == "cpu"
    if cpu and not bool(torch.isfinite(x).all()):
        raise _non_finite_error()
    pgd_step_triton(target, xs, xns, gs, eps, alpha, eps_t, alpha_t, lo, hi, norm == "l2")
    if target is not out:
        out.copy_(target)
    if cpu and not bool(torch.isfinite(out).all() & torch.isfinite(x_nat).all()):
        raise _non_finite_error()


@torch.library.custom_op("robustops::pgd_step_triton", mutates_args=())
def _pgd_step_triton(x: Tensor, x_nat: Tensor, grad: Tensor, eps: float, alpha: float,
                     eps_t: Optional[Tensor], alpha_t: Optional[Tensor], lo: float, hi: float,
                     norm: str) -> Tensor:
    out = torch.empty_like(x)
    _triton_into(out, x, x_nat, grad, eps, alpha, eps_t, alpha_t, lo, hi, norm)
    return out


@torch.library.custom_op("robustops::pgd_step_triton_", mutates_args=("x",))
def _pgd_step_triton_inplace(x: Tensor, x_nat: Tensor, grad: Tensor, eps: float, alpha: float,
                             eps_t: Optional[Tensor], alpha_t: Optional[Tensor], lo: float,
                             hi: float, norm: str) -> None:
    _triton_into(x, x, x_nat, grad, eps, alpha, eps_t, alpha_t, lo, hi, norm)


_pgd_step_triton.register_fake(_fake)
_pgd_step_triton_inplace.register_fake(_fake_inplace)


def _setup_context(ctx, inputs, output):
    x, x_nat, grad, eps, alpha, eps_t, alpha_t, lo, hi, norm = inputs
    ctx.save_for_backward(x, x_nat, grad, eps_t, alpha_t)
    ctx.scalars = (eps, alpha, lo, hi, norm)


def _backward(ctx, grad_out):
    x, x_nat, grad, eps_t, alpha_t = ctx.saved_tensors
    eps, alpha, lo, hi, norm = ctx.scalars
    e = eps if eps_t is None else eps_t
    a = alpha if alpha_t is None else alpha_t
    gx, gxn, gg = _pgd_step_backward_reference(grad_out, x, x_nat, grad, e, a, norm, lo, hi)
    return gx, gxn, gg, None, None, None, None, None, None, None


_pgd_step_triton.register_autograd(_backward, setup_context=_setup_context)


# ----------------------------------------------------------------------------- public API


def _python_backend(name: str, inplace: bool, x, x_nat, grad, eps, alpha, eps_t, alpha_t,
                    lo, hi, norm) -> Tensor:
    """pgd_step on the reference or triton backend (checked in Python, same messages)."""
    if name == "triton":
        if inplace:
            _pgd_step_triton_inplace(x, x_nat, grad, eps, alpha, eps_t, alpha_t, lo, hi, norm)
            return x
        return _pgd_step_triton(x, x_nat, grad, eps, alpha, eps_t, alpha_t, lo, hi, norm)
    _validate(x, x_nat, grad, eps, alpha, eps_t, alpha_t, lo, hi, norm)
    if eps_t is not None or alpha_t is not None:
        eps_t = _per_sample_values(eps_t, "eps", x)
        alpha_t = _per_sample_values(alpha_t, "alpha", x)
    res = pgd_step_reference(x, x_nat, grad, eps if eps_t is None else eps_t,
                             alpha if alpha_t is None else alpha_t, norm, lo, hi)
    if x.device.type == "cpu" and not bool(torch.isfinite(res).all() & torch.isfinite(x).all()
                                           & torch.isfinite(x_nat).all()):
        raise _non_finite_error()
    if not inplace:
        return res
    if torch.is_grad_enabled() and x.requires_grad:
        raise RuntimeError("pgd_step_: x requires grad, and an in-place step would hide the "
                           "update from autograd; run it under torch.no_grad() (as attack "
                           "loops do) or use the differentiable out-of-place pgd_step")
    with torch.no_grad():
        x.copy_(res)
    return x


def pgd_step(x: Tensor, x_nat: Tensor, grad: Tensor, eps: Scalar, alpha: Scalar, *,
             norm: Union[str, float] = "linf", lo: float = 0.0, hi: float = 1.0) -> Tensor:
    """One projected-gradient ascent step, out of place; differentiable in x and x_nat (and grad for L2).

    x: (B, ...) float adversarial images in [lo, hi]; x_nat: clean images, same shape/dtype;
    grad: d loss / d x, same shape (any floating dtype); eps, alpha: floats or (B,) tensors >= 0;
    norm: 'linf' or 'l2'. Returns (B, ...) with x's dtype and memory format.
    """
    eps, alpha, eps_t, alpha_t, norm = _arguments(eps, alpha, norm)
    try:
        name = backend.python_path(x, OP, BACKENDS)
        if name is None:
            return (_OP if is_compiling() else _OP_EAGER)(x, x_nat, grad, eps, alpha, eps_t, alpha_t,
                                                          lo, hi, norm)
    except (TypeError, AttributeError, RuntimeError):
        _check_tensors(x, x_nat, grad)  # a clearer message than the schema's
        raise
    return _python_backend(name, False, x, x_nat, grad, eps, alpha, eps_t, alpha_t, lo, hi, norm)


def pgd_step_(x: Tensor, x_nat: Tensor, grad: Tensor, eps: Scalar, alpha: Scalar, *,
              norm: Union[str, float] = "linf", lo: float = 0.0, hi: float = 1.0) -> Tensor:
    """In-place pgd_step (what attack loops use): updates and returns x. Same arguments as pgd_step."""
    eps, alpha, eps_t, alpha_t, norm = _arguments(eps, alpha, norm)
    try:
        name = backend.python_path(x, OP, BACKENDS)
        if name is None:
            (_OP_INPLACE if is_compiling() else _OP_INPLACE_EAGER)(
                x, x_nat, grad, eps, alpha, eps_t, alpha_t, lo, hi, norm)
            return x
    except (TypeError, AttributeError, RuntimeError):
        _check_tensors(x, x_nat, grad)
        raise
    return _python_backend(name, True, x, x_nat, grad, eps, alpha, eps_t, alpha_t, lo, hi, norm)
