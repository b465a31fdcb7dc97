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

Layers: custom ops ``robustops::sign_matched_product`` and
``robustops::sign_matched_product_backward``, references, fake kernels, autograd
and validation here; kernels in kernels/sign_matched_product.h,
csrc/cpu/sign_matched_product.cpp, csrc/cuda/sign_matched_product.cu and
robustops/triton/sign_matched_product.py.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .. import backend
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


# ----------------------------------------------------------------------------- custom ops


@torch.library.custom_op("robustops::sign_matched_product", mutates_args=())
def _sign_matched_product_op(b: Tensor, d: Tensor) -> Tensor:
    name = backend.resolve(b.device, OP, BACKENDS)
    if name == "reference":
        return sign_matched_product_reference(b, d)
    bb, dd = b.contiguous(), d.contiguous()
    out = bb.new_empty((bb.shape[0],))
    if name == "triton":
        from ..triton.sign_matched_product import sign_matched_product_triton
        sign_matched_product_triton(out, bb, dd)
    else:
        backend.extension().sign_matched_product(out, bb, dd)
    return out


@_sign_matched_product_op.register_fake
def _(b, d):
    return b.new_empty((b.shape[0],))


@torch.library.custom_op("robustops::sign_matched_product_backward", mutates_args=())
def _sign_matched_product_backward_op(grad_out: Tensor, b: Tensor, d: Tensor
                                      ) -> tuple[Tensor, Tensor]:
    name = backend.resolve(b.device, OP, BACKENDS)
    if name == "reference":
        return sign_matched_product_backward_reference(grad_out, b, d)
    bb, dd = b.contiguous(), d.contiguous()
    go = grad_out.to(bb.dtype).contiguous()
    gb = torch.empty(bb.shape, dtype=bb.dtype, device=bb.device)
    gd = torch.empty(bb.shape, dtype=bb.dtype, device=bb.device)
    if name == "triton":
        from ..triton.sign_matched_product import sign_matched_product_backward_triton
        sign_matched_product_backward_triton(gb, gd, go, bb, dd)
    else:
        backend.extension().sign_matched_product_backward(gb, gd, go, bb, dd)
    return gb, gd


@_sign_matched_product_backward_op.register_fake
def _(grad_out, b, d):
    return (torch.empty(b.shape, dtype=b.dtype, device=b.device),
            torch.empty(b.shape, dtype=b.dtype, device=b.device))


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, grad_out):
    b, d = ctx.saved_tensors
    return _sign_matched_product_backward_op(grad_out, b, d)


_sign_matched_product_op.register_autograd(_backward, setup_context=_setup_context)


def _setup_backward_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward_of_backward(ctx, h_b, h_d):
    """Gradients of (grad_b, grad_d) = (go m d, go (m b + (1 - m) sign d)) for upstream
    (h_b, h_d), with the mask m held constant:
    d/dgo = sum_j h_b m d + h_d (m b + (1 - m) sign d);  d/db = go m h_d;  d/dd = go m h_b.
    """
    go, b, d = ctx.saved_tensors
    ct = _opmath(b.dtype)
    bc, dc, g = b.to(ct), d.to(ct), go.to(ct)[:, None]
    m = _match(bc, dc)
    d_go = torch.zeros_like(g[:, 0])
    d_b = d_d = None
    if h_b is not None:
        hb = h_b.to(ct)
        d_go = d_go + (hb * m * dc).sum(-1)
        d_d = (g * m * hb).to(d.dtype)
    if h_d is not None:
        hd = h_d.to(ct)
        d_go = d_go + (hd * (m * bc + (1 - m) * torch.sign(dc))).sum(-1)
        d_b = (g * m * hd).to(b.dtype)
    return d_go.to(go.dtype), d_b, d_d


_sign_matched_product_backward_op.register_autograd(_backward_of_backward,
                                                    setup_context=_setup_backward_context)


# ----------------------------------------------------------------------------- public API


def sign_matched_product(b: Tensor, d: Tensor) -> Tensor:
    """WACR's term per sample: sum of b*d where signs match plus |d| where they differ.

    b, d: (B, *) floating, same shape, dtype and device (e.g. two (B, C, H, W)
    attribution maps). Returns (B,) in their dtype; differentiable in both, twice.
    """
    for name, t in (("b", b), ("d", d)):
        if not isinstance(t, Tensor):
            raise ValueError(f"sign_matched_product: {name} must be a tensor, got "
                             f"{type(t).__name__}")
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
        raise ValueError(f"sign_matched_product: d is on {d.device} but b is on {b.device}")
    n = math.prod(b.shape[1:])
    return _sign_matched_product_op(b.reshape(b.shape[0], n), d.reshape(d.shape[0], n))
