"""ig_accumulate: the integrated-gradients accumulation (METHODS.md section 5), fused.

Given the gradients of a scalar output at S points of the straight path from a
baseline a to an input x, stacked step-major as path_grads (S, B, *) (the layout of
path points batched along the batch dimension: point s of sample b is row s*B + b),

    IG(a -> x) = (x - a) * sum_s w_s path_grads[s]        (B, *)

with w_s = 1/m for METHODS.md's right Riemann sum ((b - a)/m * sum of path
gradients). Chunked IG calls it once per chunk of path points with the chunk's
weights and adds the results (the formula is linear in the path gradients), so no
(m, B, *) tensor ever exists.

One pass over the path gradients and no (S, B, *) temporary (eager PyTorch with
general weights multiplies, sums and multiplies again). The op also returns the
weighted sum acc (B, *) and autograd saves it instead of the path gradients, so the
backward reads only (B, *) tensors: grad_path[s] = w_s (x - a) grad_out and
grad_x = grad_out acc. Gradients flow to path_grads (which in a training loss are
themselves functions of the parameters, built with create_graph=True), to x and to
the baseline; the weights are constants. The backward op is differentiable again
(its derivative is written in PyTorch ops), so a loss can contain gradients of IG.

Layouts and dtypes: x, baseline and every path_grads[s] with one dense layout
(contiguous, channels_last, ...) run as they are and the output follows x's
layout; anything else is made contiguous. float32 and float64 compute in their
own precision; float16/bfloat16 compute in float32. NaN/Inf propagate.

Layers: the ops ``robustops::ig_accumulate`` (path_grads, x, baseline or None for
zeros, weights or None for 1/S -> out), ``robustops::ig_accumulate_with_acc`` (the same
-> (out, acc): what autograd runs and saves) and ``robustops::ig_accumulate_backward``
are declared in C++ (csrc/ops/ig_accumulate.cpp, with their argument checks and autograd
kernels) and run kernels registered per dispatch key (csrc/cpu/ig_accumulate.cpp,
csrc/cuda/ig_accumulate.cu; math in kernels/ig_accumulate.h). This file holds the
public function (one call of ``torch.ops.robustops.ig_accumulate``), the fake kernels,
the plain-PyTorch references (the oracle of every test and the fallback without the
extension) and the Triton backend (robustops/triton/ig_accumulate.py) as
``robustops::ig_accumulate_triton``.
"""
from __future__ import annotations

from numbers import Real
from typing import Optional, Sequence, Union

import torch
from torch.compiler import is_compiling
from torch import Tensor
from torch._prims_common import is_non_overlapping_and_dense_or_false as _dense

from ..arguments import require_real, require_tensor
from .. import backend
from .pgd_step import _opmath

__all__ = ["ig_accumulate", "ig_accumulate_reference", "ig_accumulate_backward_reference"]

OP = "ig_accumulate"
BACKENDS = ("reference", "cpp", "cuda", "triton")
_FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _steps_view(w: Tensor, ndim: int) -> Tensor:
    """(S,) weights broadcastable against (S, B, *) path gradients."""
    return w.reshape((-1,) + (1,) * (ndim - 1))


# ----------------------------------------------------------------------------- reference


def ig_accumulate_reference(path_grads: Tensor, x: Tensor, baseline: Tensor,
                            weights: Tensor) -> Tensor:
    """Plain-PyTorch ig_accumulate: the oracle for every backend (no validation).

    path_grads (S, B, *), x and baseline (B, *), weights (S,). Returns (B, *) in x's
    dtype and layout, computed in float32 (float64 for float64). Differentiable by
    torch autograd in path_grads, x and baseline.
    """
    return _reference_forward(path_grads, x, baseline, weights)[0]


def _reference_forward(path_grads: Tensor, x: Tensor, baseline: Tensor,
                       weights: Tensor) -> tuple[Tensor, Tensor]:
    """(out like x, acc like x in the compute type)."""
    ct = _opmath(x.dtype)
    g = path_grads.to(ct)
    acc = (_steps_view(weights.to(ct), g.ndim) * g).sum(0)
    out = torch.empty_like(x)
    out.copy_((x.to(ct) - baseline.to(ct)) * acc)
    acc_out = torch.empty_like(x, dtype=ct)
    acc_out.copy_(acc)
    return out, acc_out


def ig_accumulate_backward_reference(grad_out: Tensor, grad_acc: Tensor, acc: Tensor, x: Tensor,
                                     baseline: Tensor, weights: Tensor
                                     ) -> tuple[Tensor, Tensor]:
    """Analytic (grad_path_grads (S, B, *), grad_x (B, *)) of ig_accumulate from the saved acc.

    grad_path[s] = w_s ((x - baseline) grad_out + grad_acc); grad_x = grad_out acc
    (grad_baseline = -grad_x). grad_acc: the gradient reaching the acc output (zeros
    unless a higher-order derivative uses it).
    """
    ct = _opmath(x.dtype)
    go = grad_out.to(ct)
    w = _steps_view(weights.to(ct), x.ndim + 1)
    gp = _stacked_empty(x, weights.shape[0])
    gp.copy_(w * ((x.to(ct) - baseline.to(ct)) * go + grad_acc.to(ct)).unsqueeze(0))
    gx = torch.empty_like(x)
    gx.copy_(go * acc.to(ct))
    return gp, gx


# ----------------------------------------------------------------------------- layouts


def _stacked_empty(x: Tensor, steps: int) -> Tensor:
    """An uninitialised (S, *x.shape) tensor whose every step has x's layout (when dense):
    the layout of the C++ backward's grad_path (stacked_empty in csrc/ops/ig_accumulate.cpp)."""
    if _dense(x):
        return torch.empty_strided((steps,) + tuple(x.shape), (x.numel(),) + tuple(x.stride()),
                                   dtype=x.dtype, device=x.device)
    return torch.empty((steps,) + tuple(x.shape), dtype=x.dtype, device=x.device)


def _same_dense_layout(x: Tensor, *others: Tensor, stacked: Tensor) -> bool:
    """True when the kernels can walk every operand as one dense block of n elements."""
    if not _dense(x):
        return False
    st = x.stride()
    if (tuple(stacked.stride()[1:]) != tuple(st) or stacked.stride(0) != x.numel()
            or not _dense(stacked)):
        return False
    return all(t.stride() == st for t in others)


def _like(t: Tensor, ref: Tensor, dtype: torch.dtype) -> Tensor:
    """t in ref's layout and `dtype` (a copy only when it differs)."""
    if t.dtype == dtype and t.stride() == ref.stride():
        return t
    out = torch.empty_like(ref, dtype=dtype)
    out.copy_(t)
    return out


# ----------------------------------------------------------------------------- python checks


def _check_tensors(path_grads, x, baseline) -> None:
    for name, t in (("path_grads", path_grads), ("x", x), ("baseline", baseline)):
        if t is not None:
            require_tensor("ig_accumulate", name, t)


def _check_float(t: Tensor, name: str, op: str = "ig_accumulate") -> None:
    if t.dtype not in _FLOAT_DTYPES:
        raise ValueError(f"{op}: {name} must be float32, float64, float16 or bfloat16, "
                         f"got {t.dtype}")


def _expandable(shape, target) -> bool:
    """True when a tensor of `shape` expands to `target` (at::is_expandable_to)."""
    if len(shape) > len(target):
        return False
    return all(s == 1 or s == t for s, t in zip(reversed(shape), reversed(target)))


def _validate(path_grads: Tensor, x: Tensor, baseline: Optional[Tensor],
              weights: Optional[Tensor]) -> None:
    """The checks of csrc/ops/ig_accumulate.cpp, for the backends that do not run it
    (reference, triton) and for the fake kernel (same messages)."""
    _check_tensors(path_grads, x, baseline)
    named = (("path_grads", path_grads), ("x", x), ("baseline", baseline))
    for name, t in named:
        if t is not None:
            _check_float(t, name)
    for name, t in (named[0], named[2]):
        if t is None:
            continue
        if t.dtype != x.dtype:
            raise ValueError(f"ig_accumulate: {name} has dtype {t.dtype} but x has {x.dtype}; "
                             "they must match")
        if t.device != x.device:
            raise ValueError(f"ig_accumulate: {name} is on {t.device} but x is on {x.device}; "
                             f"move it with {name}.to(x.device)")
    if x.ndim < 1:
        raise ValueError("ig_accumulate: x must have a batch dimension (B, *), got a scalar")
    if path_grads.ndim != x.ndim + 1 or tuple(path_grads.shape[1:]) != tuple(x.shape):
        raise ValueError(f"ig_accumulate: path_grads must be (S, *x.shape) = (S, "
                         f"{', '.join(map(str, x.shape))}), got {tuple(path_grads.shape)}")
    steps = path_grads.shape[0]
    if steps == 0:
        raise ValueError("ig_accumulate: path_grads has no path points (S = 0)")
    if baseline is not None and not _expandable(baseline.shape, x.shape):
        raise ValueError(f"ig_accumulate: baseline {tuple(baseline.shape)} does not broadcast "
                         f"to x {tuple(x.shape)}")
    if weights is not None:
        _check_weights(weights, steps)


def _check_weights(weights: Tensor, steps: int) -> None:
    if weights.ndim != 1 or weights.shape[0] != steps or not weights.is_floating_point():
        raise ValueError(f"ig_accumulate: weights must be a float (S,) = ({steps},) tensor, "
                         f"got {tuple(weights.shape)} {weights.dtype}")
    if weights.requires_grad:
        raise ValueError("ig_accumulate: weights are constants (quadrature weights) and get "
                         "no gradient; pass weights.detach()")


def _validate_backward(grad_out: Tensor, grad_acc: Tensor, acc: Tensor, x: Tensor,
                       baseline: Tensor, weights: Tensor) -> None:
    op = "ig_accumulate_backward"
    _check_float(x, "x", op)
    if x.ndim < 1:
        raise ValueError(f"{op}: x must have a batch dimension (B, *), got a scalar")
    for name, t in (("grad_out", grad_out), ("grad_acc", grad_acc), ("acc", acc),
                    ("baseline", baseline)):
        _check_float(t, name, op)
        if t.shape != x.shape:
            raise ValueError(f"{op}: {name} has shape {tuple(t.shape)} but x has "
                             f"{tuple(x.shape)}; they must match")
        if t.device != x.device:
            raise ValueError(f"{op}: {name} is on {t.device} but x is on {x.device}; "
                             f"move it with {name}.to(x.device)")
    if weights.ndim != 1 or weights.shape[0] == 0 or not weights.is_floating_point():
        raise ValueError(f"{op}: weights must be a float (S,) tensor with S > 0, got "
                         f"{tuple(weights.shape)} {weights.dtype}")


def path_weights(weights: Union[None, float, Sequence[float], Tensor], steps: int,
                 dtype: torch.dtype, device) -> Tensor:
    """The (S,) weights tensor in the compute type of `dtype` (see ig_accumulate)."""
    ct = _opmath(dtype)
    if weights is None:
        return torch.full((steps,), 1.0 / steps, dtype=ct, device=device)
    if isinstance(weights, Real):  # a bool too: require_real refuses it with a TypeError
        w = require_real(weights, "weights", where="ig_accumulate")
        return torch.full((steps,), w, dtype=ct, device=device)
    if isinstance(weights, Tensor):
        _check_weights(weights, steps)
        return weights.to(device=device, dtype=ct)
    try:
        w = torch.tensor([float(v) for v in weights], dtype=ct, device=device)
    except (TypeError, ValueError):
        raise TypeError(f"ig_accumulate: weights must be None, a float, a sequence of floats or "
                        f"a (S,) tensor, got {type(weights).__name__}") from None
    if w.shape[0] != steps:
        raise ValueError(f"ig_accumulate: {w.shape[0]} weights for {steps} path points")
    if not bool(torch.isfinite(w).all()):
        raise ValueError(f"ig_accumulate: weights must be finite, got {list(weights)!r}")
    return w


# ----------------------------------------------------------------------------- fake kernels


def _fake(path_grads, x, baseline, weights):
    _validate(path_grads, x, baseline, weights)
    return torch.empty_like(x)


def _fake_with_acc(path_grads, x, baseline, weights):
    return _fake(path_grads, x, baseline, weights), torch.empty_like(x, dtype=_opmath(x.dtype))


def _fake_backward(grad_out, grad_acc, acc, x, baseline, weights):
    _validate_backward(grad_out, grad_acc, acc, x, baseline, weights)
    return _stacked_empty(x, weights.shape[0]), torch.empty_like(x)


_OP, _OP_EAGER = backend.native_op("ig_accumulate", {
    "ig_accumulate": _fake,
    "ig_accumulate_with_acc": _fake_with_acc,
    "ig_accumulate_backward": _fake_backward,
})


# ----------------------------------------------------------------------------- triton backend


@torch.library.custom_op("robustops::ig_accumulate_triton", mutates_args=())
def _ig_accumulate_triton(path_grads: Tensor, x: Tensor, baseline: Tensor,
                          weights: Tensor) -> tuple[Tensor, Tensor]:
    """baseline: x's shape; weights: (S,) in the compute type (see _python_backend)."""
    from ..triton.ig_accumulate import ig_accumulate_triton
    out, acc = torch.empty_like(x), torch.empty_like(x, dtype=_opmath(x.dtype))
    if out.numel() == 0:
        return out, acc
    t_out, t_acc = out, acc
    if not _same_dense_layout(x, baseline, out, acc, stacked=path_grads):
        path_grads, x, baseline = path_grads.contiguous(), x.contiguous(), baseline.contiguous()
        t_out = torch.empty(out.shape, dtype=out.dtype, device=out.device)
        t_acc = torch.empty(acc.shape, dtype=acc.dtype, device=acc.device)
    ig_accumulate_triton(t_out, t_acc, path_grads, x, baseline, weights.contiguous())
    if t_out is not out:
        out.copy_(t_out)
        acc.copy_(t_acc)
    return out, acc


@torch.library.custom_op("robustops::ig_accumulate_backward_triton", mutates_args=())
def _ig_accumulate_backward_triton(grad_out: Tensor, grad_acc: Tensor, acc: Tensor, x: Tensor,
                                   baseline: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    from ..triton.ig_accumulate import ig_accumulate_backward_triton
    _validate_backward(grad_out, grad_acc, acc, x, baseline, weights)
    gp, gx = _stacked_empty(x, weights.shape[0]), torch.empty_like(x)
    if x.numel() == 0:
        return gp, gx
    ct = _opmath(x.dtype)
    # Autograd often hands over expanded or differently strided gradients.
    go, ga, ac, a = (_like(grad_out, x, x.dtype), _like(grad_acc, x, ct), _like(acc, x, ct),
                     _like(baseline, x, x.dtype))
    tp, tx = gp, gx
    if not _same_dense_layout(x, a, go, ga, ac, gx, stacked=gp):
        x, a, go, ga, ac = (t.contiguous() for t in (x, a, go, ga, ac))
        tp = torch.empty(gp.shape, dtype=gp.dtype, device=gp.device)
        tx = torch.empty(gx.shape, dtype=gx.dtype, device=gx.device)
    ig_accumulate_backward_triton(tp, tx, go, ga, ac, x, a, weights.to(ct).contiguous())
    if tp is not gp:
        gp.copy_(tp)
        gx.copy_(tx)
    return gp, gx


_ig_accumulate_triton.register_fake(_fake_with_acc)
_ig_accumulate_backward_triton.register_fake(_fake_backward)


def _setup_context(ctx, inputs, output):
    path_grads, x, baseline, weights = inputs
    # acc, not the (S, B, *) path gradients: the backward needs nothing else.
    ctx.save_for_backward(output[1], x, baseline, weights)


def _backward(ctx, grad_out, grad_acc):
    acc, x, baseline, weights = ctx.saved_tensors
    gp, gx = _ig_accumulate_backward_triton(grad_out, grad_acc, acc, x, baseline, weights)
    return gp, gx, -gx, None  # the weights are constants


_ig_accumulate_triton.register_autograd(_backward, setup_context=_setup_context)


def _setup_backward_context(ctx, inputs, output):
    grad_out, grad_acc, acc, x, baseline, weights = inputs
    ctx.save_for_backward(grad_out, acc, x, baseline, weights)


def _backward_of_backward(ctx, h_path, h_x):
    """Gradients of (grad_path, grad_x) = backward(grad_out, grad_acc, acc, x, baseline).

    With d = x - baseline and H = sum_s w_s h_path[s]:
    grad_path[s] = w_s (d grad_out + grad_acc) and grad_x = grad_out acc, so
      d/dgrad_out = d H + h_x acc,   d/dgrad_acc = H,   d/dacc = grad_out h_x,
      d/dx = grad_out H = -d/dbaseline.
    Written in PyTorch ops so it is differentiable again (third order and up). (The C++
    autograd kernel of the backward op computes the same.)
    """
    go, acc, x, a, w = ctx.saved_tensors
    ct = _opmath(x.dtype)
    hp = torch.zeros((w.shape[0],) + tuple(x.shape), dtype=ct, device=x.device) \
        if h_path is None else h_path.to(ct)
    hx = torch.zeros_like(x, dtype=ct) if h_x is None else h_x.to(ct)
    big_h = (_steps_view(w.to(ct), hp.ndim) * hp).sum(0)
    d_go = (x.to(ct) - a.to(ct)) * big_h + hx * acc.to(ct)
    d_x = go.to(ct) * big_h
    return (d_go.to(go.dtype), big_h.to(acc.dtype), (go.to(ct) * hx).to(acc.dtype),
            d_x.to(x.dtype), (-d_x).to(a.dtype), None)


_ig_accumulate_backward_triton.register_autograd(_backward_of_backward,
                                                 setup_context=_setup_backward_context)


# ----------------------------------------------------------------------------- public API


def _python_backend(name: str, path_grads: Tensor, x: Tensor, baseline: Optional[Tensor],
                    weights: Optional[Tensor]) -> Tensor:
    """ig_accumulate on the reference or triton backend (checked in Python, same messages)."""
    _validate(path_grads, x, baseline, weights)
    base = torch.zeros_like(x) if baseline is None else baseline.expand(x.shape)
    w = path_weights(weights, path_grads.shape[0], x.dtype, x.device)
    if name == "triton":
        return _ig_accumulate_triton(path_grads, x, base, w)[0]
    return ig_accumulate_reference(path_grads, x, base, w)


def ig_accumulate(path_grads: Tensor, x: Tensor, baseline: Optional[Tensor] = None, *,
                  weights: Union[None, float, Sequence[float], Tensor] = None) -> Tensor:
    """Integrated gradients from path gradients: (x - baseline) * sum_s w_s path_grads[s].

    path_grads: (S, B, *) gradients at S path points per sample, step-major (a batched
    (S*B, *) gradient viewed as (S, B, *)); x: (B, *) the input (path end); baseline:
    (B, *) or broadcastable to it, None for zeros (path start). weights: None (1/S each:
    the mean, METHODS.md's (x - a)/m sum with S = m), a float (every step), or (S,)
    quadrature weights (constants). One floating dtype and device for all tensors.
    Returns (B, *) in x's dtype; differentiable in path_grads, x and baseline, twice.
    """
    if weights is not None and not isinstance(weights, Tensor):  # a float or a sequence
        _validate(path_grads, x, baseline, None)
        weights = path_weights(weights, path_grads.shape[0], x.dtype, x.device)
    try:
        name = backend.python_path(x, OP, BACKENDS)
        if name is None:
            return (_OP if is_compiling() else _OP_EAGER)(path_grads, x, baseline, weights)
    except (TypeError, AttributeError, RuntimeError):
        _check_tensors(path_grads, x, baseline)  # a clearer message than the schema's
        raise
    return _python_backend(name, path_grads, x, baseline, weights)
