"""sign_matched_product: WACR's sign-matched product (METHODS.md section 5), fused.

For two attributions B and D of one shape (B, *) (WACR: B the true-class IG from 0 to
x, D = -IG^CE(x -> x')), per sample:

    out_b = sum_{j: sign B_j == sign D_j} B_j D_j  +  sum_{j: signs differ} |D_j|

with sign(0) = 0. Gradients (m = [sign B == sign D], constant almost everywhere):
dL/dB = m D, dL/dD = m B + (1 - m) sign D.

One pass over B and D (eager PyTorch builds the sign tensors, the mask, two products
and a select); the backward is one elementwise pass. The backward op is
differentiable again (in PyTorch ops), so a loss may contain gradients of this term.

Layouts and dtypes: any layout (the op reads contiguous (B, N); others are copied
once); float32 and float64 compute in their own precision, float16 and bfloat16 in
float32. An empty batch gives an empty result; NaN/Inf propagate.

Layers: the ops ``robustops::sign_matched_product`` and
``robustops::sign_matched_product_backward`` are declared in C++
(csrc/ops/sign_matched_product.cpp, with their argument checks and autograd kernels)
and run kernels registered per dispatch key (csrc/cpu/sign_matched_product.cpp,
csrc/cuda/sign_matched_product.cu; math in kernels/sign_matched_product.h). This file
holds the public function (one call of ``torch.ops.robustops.sign_matched_product``),
the fake kernels, the plain-PyTorch references (the oracle of every test and the
fallback without the extension) and the Triton backend
(robustops/triton/sign_matched_product.py) as ``robustops::sign_matched_product_triton``.
"""
from __future__ import annotations

import math

import torch
from torch.compiler import is_compiling
from torch import Tensor

from .. import backend
from ..arguments import per_sample_vector, require_tensor
from .pgd_step import _opmath

__all__ = ["sign_matched_product", "sign_matched_product_reference",
           "sign_matched_product_backward_reference"]

OP = "sign_matched_product"
BACKENDS = ("reference", "cpp", "cuda", "triton")
_FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


# ----------------------------------------------------------------------------- reference


def _match(b: Tensor, d: Tensor) -> Tensor:
    return (torch.sign(b) == torch.sign(d)).to(b.dtype)


def sign_matched_product_reference(b: Tensor, d: Tensor) -> Tensor:
    """Plain-PyTorch sign_matched_product on (B, N): the oracle (no validation).

    Returns (B,) in b's dtype, computed in float32 (float64 for float64).
    """
    ct = _opmath(b.dtype)
    bc, dc = b.to(ct), d.to(ct)
    m = _match(bc, dc)
    return (m * bc * dc + (1 - m) * dc.abs()).sum(-1).to(b.dtype)


def sign_matched_product_backward_reference(grad_out: Tensor, b: Tensor, d: Tensor
                                            ) -> tuple[Tensor, Tensor]:
    """Analytic (grad_b, grad_d), each (B, N): go m d and go (m b + (1 - m) sign d)."""
    ct = _opmath(b.dtype)
    bc, dc = b.to(ct), d.to(ct)
    go = grad_out.to(ct)[:, None]
    m = _match(bc, dc)
    return ((go * m * dc).to(b.dtype).contiguous(),
            (go * (m * bc + (1 - m) * torch.sign(dc))).to(d.dtype).contiguous())


# ----------------------------------------------------------------------------- python checks


def _check_tensors(b, d) -> None:
    for name, t in (("b", b), ("d", d)):
        require_tensor("sign_matched_product", name, t)


def _validate(b: Tensor, d: Tensor) -> None:
    """The checks of csrc/ops/sign_matched_product.cpp, for the backends that do not run
    it (reference, triton) and for the fake kernel (same messages)."""
    _check_tensors(b, d)
    for name, t in (("b", b), ("d", d)):
        if t.dtype not in _FLOAT_DTYPES:
            raise ValueError(f"sign_matched_product: {name} must be float32, float64, float16 or "
                             f"bfloat16, got {t.dtype}")
        if t.ndim < 1:
            raise ValueError(f"sign_matched_product: {name} must have a batch dimension (B, *), "
                             "got a scalar")
    if d.shape != b.shape:
        raise ValueError(f"sign_matched_product: b {tuple(b.shape)} and d {tuple(d.shape)} must "
                         "have the same shape")
    if d.dtype != b.dtype:
        raise ValueError(f"sign_matched_product: d has dtype {d.dtype} but b has {b.dtype}")
    if d.device != b.device:
        raise ValueError(f"sign_matched_product: d is on {d.device} but b is on {b.device}; "
                         "move it with d.to(b.device)")


def _validate_backward(grad_out: Tensor, b: Tensor, d: Tensor) -> None:
    _validate(b, d)
    per_sample_vector("sign_matched_product_backward", "grad_out", grad_out, "b", b)


def _rows(t: Tensor) -> Tensor:
    """(B, N) contiguous from (B, *)."""
    return t.reshape(t.shape[0], math.prod(t.shape[1:])).contiguous()


# ----------------------------------------------------------------------------- fake kernels


def _fake(b, d):
    _validate(b, d)
    return b.new_empty((b.shape[0],))


def _fake_backward(grad_out, b, d):
    _validate_backward(grad_out, b, d)
    return (torch.empty(b.shape, dtype=b.dtype, device=b.device),
            torch.empty(b.shape, dtype=b.dtype, device=b.device))


_OP, _OP_EAGER = backend.native_op("sign_matched_product", {
    "sign_matched_product": _fake,
    "sign_matched_product_backward": _fake_backward,
})


# ----------------------------------------------------------------------------- triton backend


@torch.library.custom_op("robustops::sign_matched_product_triton", mutates_args=())
def _sign_matched_product_triton(b: Tensor, d: Tensor) -> Tensor:
    from ..triton.sign_matched_product import sign_matched_product_triton
    _validate(b, d)
    out = b.new_empty((b.shape[0],))
    sign_matched_product_triton(out, _rows(b), _rows(d))
    return out


@torch.library.custom_op("robustops::sign_matched_product_backward_triton", mutates_args=())
def _sign_matched_product_backward_triton(grad_out: Tensor, b: Tensor, d: Tensor
                                          ) -> tuple[Tensor, Tensor]:
    from ..triton.sign_matched_product import sign_matched_product_backward_triton
    _validate_backward(grad_out, b, d)
    bb, dd = _rows(b), _rows(d)
    gb, gd = torch.empty_like(bb), torch.empty_like(bb)
    sign_matched_product_backward_triton(gb, gd, grad_out.to(b.dtype).contiguous(), bb, dd)
    return gb.view(b.shape), gd.view(b.shape)


_sign_matched_product_triton.register_fake(_fake)
_sign_matched_product_backward_triton.register_fake(_fake_backward)


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, grad_out):
    b, d = ctx.saved_tensors
    return _sign_matched_product_backward_triton(grad_out, b, d)


_sign_matched_product_triton.register_autograd(_backward, setup_context=_setup_context)


def _backward_of_backward(ctx, h_b, h_d):
    """Gradients of (grad_b, grad_d) = (go m d, go (m b + (1 - m) sign d)) for upstream
    (h_b, h_d), with the mask m held constant:
    d/dgo = sum_j h_b m d + h_d (m b + (1 - m) sign d);  d/db = go m h_d;  d/dd = go m h_b.
    (The C++ autograd kernel of the backward op computes the same.)
    """
    go, b, d = ctx.saved_tensors
    ct = _opmath(b.dtype)
    bc, dc = _rows(b).to(ct), _rows(d).to(ct)
    g = go.to(ct)[:, None]
    m = _match(bc, dc)
    d_go = torch.zeros_like(g[:, 0])
    d_b = d_d = None
    if h_b is not None:
        hb = _rows(h_b).to(ct)
        d_go = d_go + (hb * m * dc).sum(-1)
        d_d = (g * m * hb).to(d.dtype).view(d.shape)
    if h_d is not None:
        hd = _rows(h_d).to(ct)
        d_go = d_go + (hd * (m * bc + (1 - m) * torch.sign(dc))).sum(-1)
        d_b = (g * m * hd).to(b.dtype).view(b.shape)
    return d_go.to(go.dtype), d_b, d_d


_sign_matched_product_backward_triton.register_autograd(_backward_of_backward,
                                                        setup_context=_setup_context)


# ----------------------------------------------------------------------------- public API


def _python_backend(name: str, b: Tensor, d: Tensor) -> Tensor:
    """sign_matched_product on the reference or triton backend (checked in Python)."""
    if name == "triton":
        return _sign_matched_product_triton(b, d)
    _validate(b, d)
    return sign_matched_product_reference(_rows(b), _rows(d))


def sign_matched_product(b: Tensor, d: Tensor) -> Tensor:
    """WACR's term per sample: sum of b*d where signs match plus |d| where they differ.

    b, d: (B, *) floating, same shape, dtype and device (e.g. two (B, C, H, W)
    attribution maps). Returns (B,) in their dtype; differentiable in both, twice.
    """
    try:
        name = backend.python_path(b, OP, BACKENDS)
        if name is None:
            return (_OP if is_compiling() else _OP_EAGER)(b, d)
    except (TypeError, AttributeError, RuntimeError):
        _check_tensors(b, d)  # a clearer message than the schema's
        raise
    return _python_backend(name, b, d)
