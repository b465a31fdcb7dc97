"""group_orthogonality_loss: TENET's orthogonality loss between channel groups, with backward.

From the feature map F (B, C, H, W) and a grouping of its channels (assignment (B, C),
labels in [0, K)), per sample b:

    mu_g = mean of F[b, c] over the channels c of group g      (an H*W vector)
    L_b  = sum_{i<j} |<mu_i, mu_j>| / P_b,   P_b = K'(K'-1)/2 (1 when K' < 2)

with K' the number of non-empty groups of the sample (empty groups are left out, as in
the paper's CFG/Orthogonal_loss.py); the loss is mean_b L_b, a 0-d tensor (0 for an
empty batch). METHODS.md section 2, step 5.

Gradient (d|t|/dt = sign(t), 0 at 0): dL/dmu_i = (go / (B P_b)) sum_{j != i}
sign(<mu_i, mu_j>) mu_j and dL/dF[b, c] = dL/dmu_{a(c)} / n_{a(c)}; the assignment gets
none. The backward is its own op (``robustops::group_orthogonality_loss_backward``) and
recomputes the group means from F: nothing but F and the labels is saved.

Dtypes and layouts: float32 or float64 (computed in its own precision), any layout (the
kernels read a contiguous NCHW copy). Labels outside [0, K) are rejected for CPU tensors;
on a GPU (unchecked, no host synchronisation) such a channel belongs to no group.

Layers: the ops ``robustops::group_orthogonality_loss`` and
``robustops::group_orthogonality_loss_backward`` are declared in C++
(csrc/ops/group_orthogonality_loss.cpp, with their argument checks and the autograd kernel)
and run kernels registered per dispatch key (csrc/cpu/group_orthogonality_loss.cpp,
csrc/cuda/group_orthogonality_loss.cu; math in kernels/group_orthogonality_loss.h). This
file holds the public function (one call of the op), the fake kernels, the plain-PyTorch
references (the oracle and fallback) and the Triton backend
(robustops/triton/group_orthogonality_loss.py) as ``robustops::group_orthogonality_loss_triton``.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.compiler import is_compiling

from ..arguments import require_tensor
from .. import backend
from .channel_kmeans import check_assignment
from .group_inhibition_mask import _check_labels

__all__ = ["group_orthogonality_loss", "group_orthogonality_loss_reference",
           "group_orthogonality_loss_backward_reference"]

OP = "group_orthogonality_loss"
BACKENDS = ("reference", "cpp", "cuda", "triton")


# ----------------------------------------------------------------------------- reference


def _group_means(features: Tensor, assignment: Tensor, num_groups: int):
    """(mu (B, K, N), counts (B, K), a (B, C) with bad labels sent to slot K, pairs (B,))."""
    b, c = features.shape[:2]
    k = num_groups
    x = features.reshape(b, c, features.shape[2] * features.shape[3])
    n = x.shape[2]
    valid = (assignment >= 0) & (assignment < k)
    a = torch.where(valid, assignment, k)
    ones = torch.ones(b, c, dtype=x.dtype, device=x.device)
    counts = torch.zeros(b, k + 1, dtype=x.dtype, device=x.device).scatter_add_(1, a, ones)
    sums = torch.zeros(b, k + 1, n, dtype=x.dtype, device=x.device).scatter_add(
        1, a[..., None].expand(b, c, n), x)
    counts, sums = counts[:, :k], sums[:, :k]
    mu = sums / counts.clamp(min=1)[..., None]
    kprime = (counts > 0).sum(1)
    pairs = torch.where(kprime > 1, kprime * (kprime - 1) // 2, 1).to(x.dtype)
    return mu, counts, a, pairs


def group_orthogonality_loss_reference(features: Tensor, assignment: Tensor,
                                       num_groups: int) -> Tensor:
    """Plain-PyTorch group_orthogonality_loss (no validation): 0-d, features' dtype.

    features: (B, C, H, W) float; assignment: (B, C) int64. Differentiable in features by
    torch autograd (the tests use that as a second oracle for the backward).
    """
    b = features.shape[0]
    if b == 0:
        return features.new_zeros(()) + 0 * features.sum()
    mu, _, _, pairs = _group_means(features, assignment, num_groups)
    gram = torch.bmm(mu, mu.transpose(1, 2))
    per_sample = gram.abs().triu(1).sum((1, 2)) / pairs
    return per_sample.sum() / b


def group_orthogonality_loss_backward_reference(grad_out: Tensor, features: Tensor,
                                                assignment: Tensor, num_groups: int) -> Tensor:
    """Analytic dL/dF (B, C, H, W) in plain PyTorch, given the 0-d grad_out."""
    b, c = features.shape[:2]
    if features.numel() == 0:
        return torch.zeros_like(features, memory_format=torch.contiguous_format)
    mu, counts, a, pairs = _group_means(features, assignment, num_groups)
    n = mu.shape[2]
    k = num_groups
    gram = torch.bmm(mu, mu.transpose(1, 2))
    coef = grad_out.to(mu.dtype) * torch.sign(gram) / (b * pairs)[:, None, None]
    coef = coef * (1 - torch.eye(k, dtype=mu.dtype, device=mu.device))
    dmu = torch.bmm(coef, mu) / counts.clamp(min=1)[..., None]                 # (B, K, N)
    dmu = torch.cat([dmu, torch.zeros(b, 1, n, dtype=mu.dtype, device=mu.device)], 1)
    return dmu.gather(1, a[..., None].expand(b, c, n)).reshape(features.shape)


# ----------------------------------------------------------------------------- python checks


def _validate(features, assignment, num_groups, op: str = "group_orthogonality_loss") -> None:
    """The checks of csrc/ops/group_orthogonality_loss.cpp but the labels' values (same
    messages), for the backends that do not run it, the fake kernels and clearer errors."""
    require_tensor(op, "features", features)
    if features.ndim != 4:
        raise ValueError(f"{op}: features must be 4-D (B, C, H, W), got shape "
                         f"{tuple(features.shape)}")
    if features.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"{op}: features must be float32 or float64, got "
                         f"{features.dtype} (cast half/bfloat16 maps to float32)")
    check_assignment(op, features, assignment, num_groups)


# ----------------------------------------------------------------------------- fake kernels


def _fake(features, assignment, num_groups):
    _validate(features, assignment, num_groups)
    return features.new_empty(())


def _fake_backward(grad_out, features, assignment, num_groups):
    _validate(features, assignment, num_groups, "group_orthogonality_loss_backward")
    if grad_out.numel() != 1:
        raise ValueError(f"group_orthogonality_loss_backward: grad_out must hold one value (the "
                         f"loss is 0-d), got shape {tuple(grad_out.shape)}")
    return torch.empty(features.shape, dtype=features.dtype, device=features.device)


_OP, _OP_EAGER = backend.native_op("group_orthogonality_loss", {
    "group_orthogonality_loss": _fake,
    "group_orthogonality_loss_backward": _fake_backward,
})


# ----------------------------------------------------------------------------- triton backend


@torch.library.custom_op("robustops::group_orthogonality_loss_triton", mutates_args=())
def _group_orthogonality_loss_triton(features: Tensor, assignment: Tensor,
                                     num_groups: int) -> Tensor:
    from ..triton.group_orthogonality_loss import group_orthogonality_loss_triton
    _check_labels(assignment, num_groups, OP)
    out = torch.empty((), dtype=features.dtype, device=features.device)
    if features.numel() == 0:  # no sample or no pixel: every inner product is 0
        return out.zero_()
    group_orthogonality_loss_triton(out, features.contiguous(), assignment.contiguous(),
                                    num_groups)
    return out


@torch.library.custom_op("robustops::group_orthogonality_loss_backward_triton", mutates_args=())
def _group_orthogonality_loss_backward_triton(grad_out: Tensor, features: Tensor,
                                              assignment: Tensor, num_groups: int) -> Tensor:
    from ..triton.group_orthogonality_loss import group_orthogonality_loss_backward_triton
    grad = torch.empty(features.shape, dtype=features.dtype, device=features.device)
    if grad.numel() == 0:
        return grad
    go = grad_out.to(features.dtype).reshape(()).contiguous()
    group_orthogonality_loss_backward_triton(grad, go, features.contiguous(),
                                             assignment.contiguous(), num_groups)
    return grad


_group_orthogonality_loss_triton.register_fake(_fake)
_group_orthogonality_loss_backward_triton.register_fake(_fake_backward)


def _setup_context(ctx, inputs, output):
    features, assignment, num_groups = inputs
    ctx.save_for_backward(features, assignment)
    ctx.num_groups = num_groups


def _backward(ctx, grad_out):
    features, assignment = ctx.saved_tensors
    grad = _group_orthogonality_loss_backward_triton(grad_out, features, assignment,
                                                     ctx.num_groups)
    return grad, None, None


_group_orthogonality_loss_triton.register_autograd(_backward, setup_context=_setup_context)


# ----------------------------------------------------------------------------- public API


def _python_backend(name: str, features, assignment, num_groups) -> Tensor:
    """The loss on the reference or triton backend (checked in Python, same messages)."""
    _validate(features, assignment, num_groups)
    if name == "triton":
        return _group_orthogonality_loss_triton(features, assignment, num_groups)
    _check_labels(assignment, num_groups, OP)
    return group_orthogonality_loss_reference(features, assignment, num_groups)


def group_orthogonality_loss(features: Tensor, assignment: Tensor, num_groups: int) -> Tensor:
    """TENET's orthogonality loss between the channel groups' mean maps: a 0-d tensor.

    features: (B, C, H, W) float32 or float64 (differentiable); assignment: (B, C) int64
    group labels in [0, num_groups) (no gradient); num_groups: K in [1, C]. Returns
    mean_b sum_{i<j} |<mu_i, mu_j>| / (K'(K'-1)/2) in features' dtype.
    """
    if type(num_groups) is not int:
        _validate(features, assignment, num_groups)  # e.g. a bool or float K
    try:
        name = backend.python_path(features, OP, BACKENDS)
        if name is None:
            op = _OP if is_compiling() else _OP_EAGER
            return op(features, assignment, num_groups)
    except (TypeError, AttributeError, RuntimeError):
        _validate(features, assignment, num_groups)  # clearer messages
        raise
    return _python_backend(name, features, assignment, num_groups)
