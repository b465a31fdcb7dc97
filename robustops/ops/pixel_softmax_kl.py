"""pixel_softmax_kl: CACR's channel-sum + pixel-softmax + KL-to-uniform term, fused.

For an attribution map A (B, C, *pixels) (METHODS.md section 5):

    s = sum_c A[:, c]                 (B, N)   channel sum, N pixels
    q = softmax(s) over the N pixels
    out_b = KL(U || q_b) = logsumexp(s_b) - mean(s_b) - log N          (B,)

KL(U || q) is 0 for a uniform q and grows as q concentrates: L_CACR =
pixel_softmax_kl(IG_neg) - pixel_softmax_kl(IG_true) concentrates the true class's
attribution and spreads the wrong class's. Gradient: dKL/dA[b, c, i] = q_i - 1/N
for every channel c.

The forward reads A once and s (N per sample, cache-resident) twice and writes (B,)
plus the logsumexp (B,), saved for backward; the backward is one elementwise pass
writing the (B, N) gradient of the channel sum, which autograd expands over the
channels (no copies). Eager PyTorch materialises s, the softmax and its
reductions. The backward op is differentiable again (its derivative, the softmax
Jacobian, is written in PyTorch ops), so a loss may contain gradients of this term.

Layouts and dtypes: any layout (the op reads contiguous (B, C, N); others are
copied once); float32 and float64 compute in their own precision, float16 and
bfloat16 in float32. An empty batch gives an empty result; NaN/Inf propagate.

Layers: the ops ``robustops::pixel_softmax_kl`` (attr (B, C, *pixels) -> (KL, lse))
and ``robustops::pixel_softmax_kl_backward`` are declared in C++
(csrc/ops/pixel_softmax_kl.cpp, with their argument checks and autograd kernels) and
run kernels registered per dispatch key (csrc/cpu/pixel_softmax_kl.cpp,
csrc/cuda/pixel_softmax_kl.cu; math in kernels/pixel_softmax_kl.h). This file holds the
public function (one call of ``torch.ops.robustops.pixel_softmax_kl``), the fake
kernels, the plain-PyTorch references (the oracle of every test and the fallback
without the extension) and the Triton backend (robustops/triton/pixel_softmax_kl.py)
as ``robustops::pixel_softmax_kl_triton``.
"""
from __future__ import annotations

import math

import torch
from torch.compiler import is_compiling
from torch import Tensor

from .. import backend
from ..arguments import per_sample_vector, require_tensor
from .pgd_step import _opmath

__all__ = ["pixel_softmax_kl", "pixel_softmax_kl_reference",
           "pixel_softmax_kl_backward_reference"]

OP = "pixel_softmax_kl"
BACKENDS = ("reference", "cpp", "cuda", "triton")
_FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


# ----------------------------------------------------------------------------- reference


def pixel_softmax_kl_reference(attr: Tensor) -> Tensor:
    """Plain-PyTorch pixel_softmax_kl on (B, C, N): the oracle (no validation).

    Returns (B,) in attr's dtype, computed in float32 (float64 for float64) as
    logsumexp(s) - mean(s) - log N with s the channel sum; differentiable by autograd.
    """
    return _reference_forward(attr)[0]


def _reference_forward(attr: Tensor) -> tuple[Tensor, Tensor]:
    """(KL (B,) in attr's dtype, logsumexp (B,) in the compute type)."""
    ct = _opmath(attr.dtype)
    s = attr.to(ct).sum(1)
    lse = torch.logsumexp(s, -1)
    return (lse - s.mean(-1) - math.log(s.shape[-1])).to(attr.dtype), lse


def pixel_softmax_kl_backward_reference(grad_out: Tensor, lse: Tensor, attr: Tensor) -> Tensor:
    """Analytic gradient wrt the channel sum (B, N) (that of every channel):
    grad_out[b] * (exp(s_bi - lse_b) - 1/N)."""
    ct = _opmath(attr.dtype)
    s = attr.to(ct).sum(1)
    g = grad_out.to(ct)[:, None] * (torch.exp(s - lse.to(ct)[:, None]) - 1.0 / s.shape[-1])
    return g.to(attr.dtype).contiguous()


# ----------------------------------------------------------------------------- python checks


def _check_tensor(attr) -> None:
    require_tensor("pixel_softmax_kl", "attr", attr)


def _validate(attr: Tensor) -> None:
    """The checks of csrc/ops/pixel_softmax_kl.cpp, for the backends that do not run it
    (reference, triton) and for the fake kernel (same messages)."""
    _check_tensor(attr)
    if attr.dtype not in _FLOAT_DTYPES:
        raise ValueError(f"pixel_softmax_kl: attr must be float32, float64, float16 or bfloat16, "
                         f"got {attr.dtype}")
    if attr.ndim < 3:
        raise ValueError(f"pixel_softmax_kl: attr must be (B, C, *pixels) with at least 3 dims "
                         f"(e.g. (B, C, H, W)); got shape {tuple(attr.shape)}")
    if attr.shape[1] == 0 or math.prod(attr.shape[2:]) == 0:
        raise ValueError(f"pixel_softmax_kl: attr needs at least one channel and one pixel, got "
                         f"shape {tuple(attr.shape)}")


def _validate_backward(grad_out: Tensor, lse: Tensor, attr: Tensor) -> None:
    _validate(attr)
    per_sample_vector("pixel_softmax_kl_backward", "grad_out", grad_out, "attr", attr)
    per_sample_vector("pixel_softmax_kl_backward", "lse", lse, "attr", attr)


def _planes(attr: Tensor) -> Tensor:
    """(B, C, N) contiguous from (B, C, *pixels)."""
    return attr.reshape(attr.shape[0], attr.shape[1], math.prod(attr.shape[2:])).contiguous()


# ----------------------------------------------------------------------------- fake kernels


def _fake(attr):
    _validate(attr)
    return attr.new_empty((attr.shape[0],)), attr.new_empty((attr.shape[0],),
                                                            dtype=_opmath(attr.dtype))


def _fake_backward(grad_out, lse, attr):
    _validate_backward(grad_out, lse, attr)
    return torch.empty((attr.shape[0],) + tuple(attr.shape[2:]), dtype=attr.dtype,
                       device=attr.device)


_OP, _OP_EAGER = backend.native_op("pixel_softmax_kl", {
    "pixel_softmax_kl": _fake,
    "pixel_softmax_kl_backward": _fake_backward,
})


# ----------------------------------------------------------------------------- triton backend


@torch.library.custom_op("robustops::pixel_softmax_kl_triton", mutates_args=())
def _pixel_softmax_kl_triton(attr: Tensor) -> tuple[Tensor, Tensor]:
    from ..triton.pixel_softmax_kl import pixel_softmax_kl_triton
    _validate(attr)
    out = attr.new_empty((attr.shape[0],))
    lse = attr.new_empty((attr.shape[0],), dtype=_opmath(attr.dtype))
    pixel_softmax_kl_triton(out, lse, _planes(attr))
    return out, lse


@torch.library.custom_op("robustops::pixel_softmax_kl_backward_triton", mutates_args=())
def _pixel_softmax_kl_backward_triton(grad_out: Tensor, lse: Tensor, attr: Tensor) -> Tensor:
    from ..triton.pixel_softmax_kl import pixel_softmax_kl_backward_triton
    _validate_backward(grad_out, lse, attr)
    a = _planes(attr)
    grad = torch.empty((a.shape[0],) + tuple(attr.shape[2:]), dtype=a.dtype, device=a.device)
    pixel_softmax_kl_backward_triton(grad.view(a.shape[0], a.shape[2]),
                                     grad_out.to(a.dtype).contiguous(),
                                     lse.to(_opmath(a.dtype)).contiguous(), a)
    return grad


_pixel_softmax_kl_triton.register_fake(_fake)
_pixel_softmax_kl_backward_triton.register_fake(_fake_backward)


def _setup_context(ctx, inputs, output):
    # lse is an auxiliary output for backward: the derivatives below account for its
    # dependence on attr analytically, so it carries no gradient of its own.
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(output[1], inputs[0])


def _backward(ctx, grad_out, _grad_lse):
    lse, attr = ctx.saved_tensors
    # One (B, *pixels) gradient shared by the channels: expanded, not copied (as eager's sum).
    return _pixel_softmax_kl_backward_triton(grad_out, lse, attr).unsqueeze(1).expand(attr.shape)


_pixel_softmax_kl_triton.register_autograd(_backward, setup_context=_setup_context)


def _setup_backward_context(ctx, inputs, output):
    grad_out, lse, attr = inputs
    ctx.save_for_backward(grad_out, attr)


def _backward_of_backward(ctx, h):
    """Gradients of G = grad_out (q - 1/N) (B, *pixels), q = softmax(sum_c attr), for upstream h.

    d/dgrad_out = sum_i h_i (q_i - 1/N) and d/dA[b, c, i] = grad_out_b q_i (h_i - sum_j q_j h_j)
    (the full softmax Jacobian: lse's dependence on attr is included here), in PyTorch
    ops so higher orders work too. (The C++ autograd kernel of the backward op computes
    the same.)
    """
    grad_out, attr = ctx.saved_tensors
    ct = _opmath(attr.dtype)
    q = torch.softmax(attr.to(ct).sum(1).flatten(1), -1)
    hc = h.to(ct).flatten(1)
    d_go = (hc * (q - 1.0 / q.shape[-1])).sum(-1)
    centred = hc - (q * hc).sum(-1, keepdim=True)
    d_attr = (grad_out.to(ct)[:, None] * q * centred).reshape(h.shape).unsqueeze(1)
    return d_go.to(grad_out.dtype), None, d_attr.expand(attr.shape).to(attr.dtype)


_pixel_softmax_kl_backward_triton.register_autograd(_backward_of_backward,
                                                    setup_context=_setup_backward_context)


# ----------------------------------------------------------------------------- public API


def _python_backend(name: str, attr: Tensor) -> Tensor:
    """pixel_softmax_kl on the reference or triton backend (checked in Python)."""
    if name == "triton":
        return _pixel_softmax_kl_triton(attr)[0]
    _validate(attr)
    return pixel_softmax_kl_reference(attr.reshape(attr.shape[0], attr.shape[1],
                                                   math.prod(attr.shape[2:])))


def pixel_softmax_kl(attr: Tensor) -> Tensor:
    """KL(uniform || softmax over pixels of the channel-summed attribution), per sample.

    attr: (B, C, *pixels) floating (e.g. an IG map (B, C, H, W)); at least one channel
    and one pixel. Returns (B,) in attr's dtype, >= 0; differentiable in attr, twice.
    """
    try:
        name = backend.python_path(attr, OP, BACKENDS)
        if name is None:
            return (_OP if is_compiling() else _OP_EAGER)(attr)[0]
    except (TypeError, AttributeError, RuntimeError):
        _check_tensor(attr)  # a clearer message than the schema's
        raise
    return _python_backend(name, attr)
