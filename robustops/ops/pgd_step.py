"""pgd_step: one fused projected-gradient step on an adversarial batch.

    x_new = clamp(project(x + alpha * direction(grad), x_nat, eps), lo, hi)

- ``norm="linf"``: direction = sign(grad); projection clips to [x_nat - eps, x_nat + eps].
- ``norm="l2"``: direction = grad / ||grad||_2 per sample (a zero gradient gives no
  step); projection onto the L2 ball of radius eps around x_nat, per sample.

Non-finite gradients (documented, tested): a NaN gradient entry never moves its
pixel (L-inf: sign(NaN) = 0; L2: NaN and +-Inf entries count as 0 in the norm
and in the direction, since g / ||g|| is undefined for them). L-inf moves a
+-Inf entry by +-alpha like any other sign. NaN/Inf in ``x`` or ``x_nat`` raise
ValueError on the CPU backends (the cpp kernel checks for free while it
writes); the GPU backends do not synchronise to check.

Layers: this file holds the custom ops (``robustops::pgd_step``,
``robustops::pgd_step_`` in place, ``robustops::pgd_step_backward``), the
plain-PyTorch reference (the oracle and fallback), fake kernels, autograd, and
all input validation. The kernels live in kernels/pgd_step.h (math),
csrc/cpu/pgd_step.cpp, csrc/cuda/pgd_step.cu and robustops/triton/pgd_step.py.
"""
from __future__ import annotations

import math
from numbers import Real
from typing import Optional, Union

import torch
from torch import Tensor

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


# ----------------------------------------------------------------------------- layout


def _sample_major_dense(t: Tensor) -> bool:
    """Dense in memory with each sample one contiguous block (contiguous or channels_last)."""
    if t.is_contiguous():
        return True
    if t.ndim == 4 and t.is_contiguous(memory_format=torch.channels_last):
        return True
    return t.ndim == 5 and t.is_contiguous(memory_format=torch.channels_last_3d)


def _like(t: Tensor, ref: Tensor, dtype: Optional[torch.dtype] = None) -> Tensor:
    """`t` with `ref`'s strides (and dtype), copying only when they differ."""
    dtype = dtype or ref.dtype
    if t.dtype == dtype and t.stride() == ref.stride():
        return t
    out = torch.empty_like(ref, dtype=dtype)
    out.copy_(t)
    return out


def _scalar_tensor(t: Optional[Tensor], batch: int, ct: torch.dtype, device) -> Optional[Tensor]:
    if t is None:
        return None
    t = t.to(device=device, dtype=ct)
    if t.ndim == 0:
        t = t.expand(batch)
    return t.contiguous()


def _shares_memory(a: Tensor, b: Tensor) -> bool:
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


def _check_values(t: Optional[Tensor], name: str) -> None:
    # Per-sample values can only be checked by reading them: on CPU that is
    # free; on GPU an async assert avoids a host sync.
    if t is None:
        return
    ok = torch.isfinite(t).all() & (t >= 0).all()
    if t.device.type == "cpu":
        if not bool(ok):
            raise ValueError(f"pgd_step: per-sample {name} must be finite and >= 0, got "
                             f"min {t.min().item()} (NaN present: {bool(torch.isnan(t).any())})")
    else:
        torch._assert_async(ok, f"pgd_step: per-sample {name} must be finite and >= 0")


def _non_finite_error() -> ValueError:
    return ValueError("pgd_step: x or x_nat contains NaN or Inf (the result is not finite). "
                      "Check the images given to the attack (and lo/hi, eps, alpha); NaN "
                      "gradients are fine, they leave pixels in place.")


def _run(out: Tensor, x: Tensor, x_nat: Tensor, grad: Tensor, eps: float, alpha: float,
         eps_t: Optional[Tensor], alpha_t: Optional[Tensor], lo: float, hi: float,
         norm: str) -> None:
    """Write pgd_step(x, ...) into `out` (which may be x) with the chosen backend."""
    name = backend.resolve(x.device, OP, BACKENDS)
    if eps_t is not None or alpha_t is not None:
        batch, ct = x.shape[0], _opmath(x.dtype)
        eps_t = _scalar_tensor(eps_t, batch, ct, x.device)
        alpha_t = _scalar_tensor(alpha_t, batch, ct, x.device)
        _check_values(eps_t, "eps")
        _check_values(alpha_t, "alpha")
    if name == "reference":
        res = pgd_step_reference(x, x_nat, grad, eps if eps_t is None else eps_t,
                                 alpha if alpha_t is None else alpha_t, norm, lo, hi)
        if x.device.type == "cpu" and not bool(torch.isfinite(res).all() & torch.isfinite(x_nat).all()):
            raise _non_finite_error()
        out.copy_(res)
        return
    l2 = norm == "l2"
    if name != "triton":
        # Fast path: the extension checks the layout itself (status 2: needs copies).
        status = backend.extension().pgd_step(out, x, x_nat, grad, eps, alpha, eps_t, alpha_t,
                                              lo, hi, l2)
        if status == 0:
            return
        if status == 1:
            raise _non_finite_error()
    # Kernels walk memory linearly, one sample block at a time: give them dense,
    # identically strided operands, and never let x_nat/grad share out's memory.
    target = out if _sample_major_dense(out) else torch.empty_like(out, memory_format=torch.contiguous_format)
    xs = _like(x, target)
    xns = _like(x_nat, target)
    gs = _like(grad, target)
    if _shares_memory(xns, target):
        xns = xns.clone()
    if _shares_memory(gs, target):
        gs = gs.clone()
    if xs is not target and _shares_memory(xs, target):
        xs = xs.clone()
    if name == "triton":
        from ..triton.pgd_step import pgd_step_triton
        pgd_step_triton(target, xs, xns, gs, eps, alpha, eps_t, alpha_t, lo, hi, l2)
        status = 0
    else:
        status = backend.extension().pgd_step(target, xs, xns, gs, eps, alpha, eps_t, alpha_t,
                                              lo, hi, l2)
        assert status != 2, "pgd_step: dense operands were rejected by the kernel"
    if target is not out:
        out.copy_(target)
    if status == 1:
        raise _non_finite_error()


# ----------------------------------------------------------------------------- custom ops


@torch.library.custom_op("robustops::pgd_step", mutates_args=())
def _pgd_step_op(x: Tensor, x_nat: Tensor, grad: Tensor, eps: float, alpha: float,
                 eps_t: Optional[Tensor], alpha_t: Optional[Tensor], lo: float, hi: float,
                 norm: str) -> Tensor:
    out = torch.empty_like(x)
    _run(out, x, x_nat, grad, eps, alpha, eps_t, alpha_t, lo, hi, norm)
    return out


@_pgd_step_op.register_fake
def _(x, x_nat, grad, eps, alpha, eps_t, alpha_t, lo, hi, norm):
    return torch.empty_like(x)


@torch.library.custom_op("robustops::pgd_step_", mutates_args=("x",))
def _pgd_step_inplace_op(x: Tensor, x_nat: Tensor, grad: Tensor, eps: float, alpha: float,
                         eps_t: Optional[Tensor], alpha_t: Optional[Tensor], lo: float,
                         hi: float, norm: str) -> None:
    _run(x, x, x_nat, grad, eps, alpha, eps_t, alpha_t, lo, hi, norm)


@_pgd_step_inplace_op.register_fake
def _(x, x_nat, grad, eps, alpha, eps_t, alpha_t, lo, hi, norm):
    return None


@torch.library.custom_op("robustops::pgd_step_backward", mutates_args=())
def _pgd_step_backward_op(grad_out: Tensor, x: Tensor, x_nat: Tensor, grad: Tensor,
                          eps: float, alpha: float, eps_t: Optional[Tensor],
                          alpha_t: Optional[Tensor], lo: float, hi: float,
                          norm: str) -> tuple[Tensor, Tensor, Tensor]:
    e = eps if eps_t is None else eps_t
    a = alpha if alpha_t is None else alpha_t
    gx, gxn, gg = _pgd_step_backward_reference(grad_out, x, x_nat, grad, e, a, norm, lo, hi)
    return gx.contiguous(), gxn.contiguous(), gg.contiguous()


@_pgd_step_backward_op.register_fake
def _(grad_out, x, x_nat, grad, eps, alpha, eps_t, alpha_t, lo, hi, norm):
    return (torch.empty(x.shape, dtype=x.dtype, device=x.device),
            torch.empty(x.shape, dtype=x.dtype, device=x.device),
            torch.empty(grad.shape, dtype=grad.dtype, device=grad.device))


def _setup_context(ctx, inputs, output):
    x, x_nat, grad, eps, alpha, eps_t, alpha_t, lo, hi, norm = inputs
    ctx.save_for_backward(x, x_nat, grad, eps_t, alpha_t)
    ctx.scalars = (eps, alpha, lo, hi, norm)


def _backward(ctx, grad_out):
    x, x_nat, grad, eps_t, alpha_t = ctx.saved_tensors
    eps, alpha, lo, hi, norm = ctx.scalars
    gx, gxn, gg = _pgd_step_backward_op(grad_out, x, x_nat, grad, eps, alpha, eps_t, alpha_t,
                                        lo, hi, norm)
    # eps/alpha (scalars or per-sample tensors) get no gradient.
    return gx, gxn, gg, None, None, None, None, None, None, None


_pgd_step_op.register_autograd(_backward, setup_context=_setup_context)


# ----------------------------------------------------------------------------- public API


def _check_scalar(v, name: str, batch: int, device: torch.device) -> tuple[float, Optional[Tensor]]:
    """Split eps/alpha into (float, None) or (0.0, per-sample tensor), with clear errors."""
    if isinstance(v, Tensor):
        if not v.is_floating_point():
            raise TypeError(f"pgd_step: {name} must be a float or a floating (B,) tensor, "
                            f"got a {v.dtype} tensor")
        if v.ndim > 1 or (v.ndim == 1 and v.shape[0] != batch):
            raise ValueError(f"pgd_step: per-sample {name} must have shape ({batch},) to match "
                             f"the batch, got {tuple(v.shape)}")
        if v.device != device:
            raise ValueError(f"pgd_step: {name} is on {v.device} but x is on {device}; "
                             f"move it with {name}.to(x.device)")
        return 0.0, v
    if type(v) is not float and (isinstance(v, bool) or not isinstance(v, Real)):
        raise TypeError(f"pgd_step: {name} must be a float or a (B,) tensor, got {type(v).__name__}")
    v = float(v)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"pgd_step: {name} must be finite and >= 0, got {v}")
    return v, None


def _validate(x: Tensor, x_nat: Tensor, grad: Tensor, eps, alpha, norm, lo, hi):
    for name, t in (("x", x), ("x_nat", x_nat), ("grad", grad)):
        if not isinstance(t, Tensor):
            raise TypeError(f"pgd_step: {name} must be a torch.Tensor, got {type(t).__name__}")
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
            raise ValueError(f"pgd_step: {name} is on {t.device} but x is on {x.device}")
    if x_nat.dtype != x.dtype:
        raise TypeError(f"pgd_step: x_nat has dtype {x_nat.dtype} but x has {x.dtype}; "
                        "they must match (the gradient may differ, it is cast)")
    if x.shape[0] == 0 or x.numel() == 0:
        raise ValueError(f"pgd_step: empty batch (x has shape {tuple(x.shape)}); "
                         "skip the step when there is nothing to attack")
    norm = normalize_norm(norm)
    lo, hi = float(lo), float(hi)
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise ValueError(f"pgd_step: need finite lo <= hi, got lo={lo}, hi={hi}")
    eps_f, eps_t = _check_scalar(eps, "eps", x.shape[0], x.device)
    alpha_f, alpha_t = _check_scalar(alpha, "alpha", x.shape[0], x.device)
    return eps_f, alpha_f, eps_t, alpha_t, lo, hi, norm


_is_wrapped = torch._C._functorch.is_functorch_wrapped_tensor


def _direct_call_ok(*tensors: Optional[Tensor], inplace: bool) -> bool:
    """True when plain eager code can call the kernel without the dispatcher.

    The custom op costs ~10 us of Python dispatch per call, a third of the whole
    fused step at CIFAR batch sizes; it is needed only when something observes
    the call: torch.compile, a dispatch mode (FakeTensor, counters, profilers),
    functorch transforms, tensor subclasses, or autograd.
    """
    if torch.compiler.is_compiling() or torch._C._len_torch_dispatch_stack():
        return False
    grad_mode = torch.is_grad_enabled()
    for t in tensors:
        if t is None:
            continue
        if type(t) is not Tensor or _is_wrapped(t) or (grad_mode and t.requires_grad):
            return False
    return True


_dispatch_modes = torch._C._len_torch_dispatch_stack


def _fast_inplace(x, x_nat, grad, eps, alpha, norm, lo, hi) -> bool:
    """Run the common eager CPU call in one C++ call; False: take the general path.

    Attack loops call the step thousands of times on CIFAR-sized batches, where
    ~10 us of Python checks is a third of the fused step. The C++ side accepts
    only a subset of what _validate accepts (float eps/alpha, one dtype, matching
    dense CPU tensors) and returns 2 for anything else, so every error message
    still comes from _validate.
    """
    if (type(eps) is not float or type(alpha) is not float or type(x) is not Tensor
            or type(x_nat) is not Tensor or type(grad) is not Tensor
            or (norm != "linf" and norm != "l2")
            or torch.compiler.is_compiling() or _dispatch_modes()
            or not backend.cpu_fast_path_ok()
            or _is_wrapped(x) or _is_wrapped(x_nat) or _is_wrapped(grad)):
        return False
    status = backend.extension().pgd_step_inplace_checked(
        x, x_nat, grad, eps, alpha, float(lo), float(hi), norm == "l2", torch.is_grad_enabled())
    if status == 1:
        raise _non_finite_error()
    return status == 0


def pgd_step(x: Tensor, x_nat: Tensor, grad: Tensor, eps: Scalar, alpha: Scalar, *,
             norm: Union[str, float] = "linf", lo: float = 0.0, hi: float = 1.0) -> Tensor:
    """One projected-gradient ascent step, out of place; differentiable in x and x_nat (and grad for L2).

    x: (B, ...) float adversarial images in [lo, hi]; x_nat: clean images, same shape/dtype;
    grad: d loss / d x, same shape (any floating dtype); eps, alpha: floats or (B,) tensors >= 0;
    norm: 'linf' or 'l2'. Returns (B, ...) with x's dtype and memory format.
    """
    eps_f, alpha_f, eps_t, alpha_t, lo, hi, norm = _validate(x, x_nat, grad, eps, alpha, norm, lo, hi)
    if _direct_call_ok(x, x_nat, grad, eps_t, alpha_t, inplace=False):
        out = torch.empty_like(x)
        _run(out, x, x_nat, grad, eps_f, alpha_f, eps_t, alpha_t, lo, hi, norm)
        return out
    return _pgd_step_op(x, x_nat, grad, eps_f, alpha_f, eps_t, alpha_t, lo, hi, norm)


def pgd_step_(x: Tensor, x_nat: Tensor, grad: Tensor, eps: Scalar, alpha: Scalar, *,
              norm: Union[str, float] = "linf", lo: float = 0.0, hi: float = 1.0) -> Tensor:
    """In-place pgd_step (what attack loops use): updates and returns x. Same arguments as pgd_step."""
    if _fast_inplace(x, x_nat, grad, eps, alpha, norm, lo, hi):
        return x
    eps_f, alpha_f, eps_t, alpha_t, lo, hi, norm = _validate(x, x_nat, grad, eps, alpha, norm, lo, hi)
    if torch.is_grad_enabled() and x.requires_grad:
        raise RuntimeError("pgd_step_: x requires grad, and an in-place step would hide the "
                           "update from autograd; run it under torch.no_grad() (as attack "
                           "loops do) or use the differentiable out-of-place pgd_step")
    if _direct_call_ok(x, x_nat, grad, eps_t, alpha_t, inplace=True):
        _run(x, x, x_nat, grad, eps_f, alpha_f, eps_t, alpha_t, lo, hi, norm)
        torch.autograd.graph.increment_version(x)  # what the dispatcher would do for x.add_()
        return x
    _pgd_step_inplace_op(x, x_nat, grad, eps_f, alpha_f, eps_t, alpha_t, lo, hi, norm)
    return x
