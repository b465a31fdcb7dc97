"""group_inhibition_mask: TENET's group-wise inhibition mask (METHODS.md section 2, step 3).

From the feature map F (B, C, H, W), the gradient G = dL/dF (same shape) and a grouping
of the channels (assignment (B, C), labels in [0, K), e.g. from channel_kmeans), per
sample b and group g (the channels c with assignment[b, c] = g):

    w_c  = mean_hw G[b, c]                 (channel weight)
    s_g  = sum_{c in g} w_c                (group weight)
    m_g  = sum_{c in g} w_c F[b, c]        (an H x W map)
    z    = (m_g - mean_hw m_g) / (std_hw m_g + 1e-8)        (population std)
    mask = sigmoid(-z) = 1 / (1 + exp(z))  if s_g > 0,  else 1

Flat maps: when std_hw m_g <= 1024 eps |mean_hw m_g| (eps the machine epsilon of the
compute dtype: ~1.2e-4 relative for float32, ~2.3e-13 for float64), the map counts as
constant and z = 0, so its mask is exactly 0.5. A constant map's computed std is only the
rounding noise of its mean, and the z-score would blow that noise up into an arbitrary
mask (0.284 instead of 0.5 on a constant map, and different on every backend); every
backend applies this rule. NaN never counts as flat.

and every channel of g gets its group's mask: the output is (B, C, H, W), to multiply F
with. This is the paper's get_masktensor (LinusWu/TENET_Training, TENET/Tenet.py), in one
pass per sample instead of a Python loop per sample and group. An empty group has no
channel to mask.

No gradient: the mask is a constant of the re-forward (as in the paper, where it comes
from numpy); the output is marked non-differentiable, whatever its inputs.

Dtypes and layouts: float32 or float64 (computed in its own precision), F and G of one
dtype; any layout (the kernels read contiguous NCHW copies); the mask is contiguous NCHW.
Labels outside [0, K) are rejected for CPU tensors (the check is free there); on a GPU
they are not checked (that would cost a host synchronisation per call) and such a channel
gets mask 1 (the kernels never read out of bounds).

Layers: the op ``robustops::group_inhibition_mask`` is declared in C++
(csrc/ops/group_inhibition_mask.cpp, with its argument checks and its autograd kernel, which
runs the kernels below autograd) and runs kernels registered per dispatch key
(csrc/cpu/group_inhibition_mask.cpp, csrc/cuda/group_inhibition_mask.cu; math in
kernels/group_inhibition_mask.h). This file holds the public function (one call of the op),
the fake kernel, the plain-PyTorch reference (the oracle and fallback) and the Triton
backend (robustops/triton/group_inhibition_mask.py) as ``robustops::group_inhibition_mask_triton``.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.compiler import is_compiling

from ..arguments import require_tensor
from .. import backend
from .channel_kmeans import check_assignment

__all__ = ["group_inhibition_mask", "group_inhibition_mask_reference", "STD_EPS", "flat_rtol"]

OP = "group_inhibition_mask"
BACKENDS = ("reference", "cpp", "cuda", "triton")
STD_EPS = 1e-8  # the paper's stabiliser of the z-score (kernels/group_inhibition_mask.h)
FLAT_ULPS = 1024.0  # a map is flat when sd <= FLAT_ULPS * eps * |mu| (kGimFlatUlps)


def flat_rtol(dtype: torch.dtype) -> float:
    """The relative spread below which a group map counts as constant (mask 0.5)."""
    return FLAT_ULPS * torch.finfo(dtype).eps


# ----------------------------------------------------------------------------- reference


def group_inhibition_mask_reference(features: Tensor, grad: Tensor, assignment: Tensor,
                                    num_groups: int) -> Tensor:
    """Plain-PyTorch group_inhibition_mask: the oracle for every backend (no validation).

    features, grad: (B, C, H, W) float; assignment: (B, C) int64. Returns the (B, C, H, W)
    mask, contiguous, in features' dtype. Labels outside [0, K) get mask 1.
    """
    b, c, h, w = features.shape
    k = num_groups
    n = h * w
    x = features.reshape(b, c, n)
    # Out-of-range labels go to an extra slot K whose mask is 1.
    valid = (assignment >= 0) & (assignment < k)
    a = torch.where(valid, assignment, k)
    weights = grad.reshape(b, c, n).sum(-1) / n                                # w_c
    s = torch.zeros(b, k + 1, dtype=x.dtype, device=x.device).scatter_add_(1, a, weights)
    m = torch.zeros(b, k + 1, n, dtype=x.dtype, device=x.device).scatter_add_(
        1, a[..., None].expand(b, c, n), weights[..., None] * x)
    mu = m.sum(-1, keepdim=True) / n
    sd = torch.sqrt(((m - mu) ** 2).sum(-1, keepdim=True) / n)
    flat = sd <= flat_rtol(x.dtype) * mu.abs()    # constant map: sd is rounding noise
    z = torch.where(flat, torch.zeros((), dtype=x.dtype, device=x.device),
                    (m - mu) / (sd + STD_EPS))
    gm = 1.0 / (1.0 + torch.exp(z))
    positive = ~(s <= 0)[..., None]  # a NaN weight inhibits (NaN mask): the paper's test
    positive[:, k] = False
    gm = torch.where(positive, gm, torch.ones((), dtype=x.dtype, device=x.device))
    return gm.gather(1, a[..., None].expand(b, c, n)).reshape(b, c, h, w)


# ----------------------------------------------------------------------------- python checks


def _check_labels(assignment: Tensor, num_groups: int, op: str = "group_inhibition_mask") -> None:
    """Labels in [0, K): checked for CPU tensors only (free there; a sync on a GPU), and not
    while torch.compile traces the Python backends (a data-dependent branch; a bad label
    then gets mask 1 / counts in no group, as on a GPU)."""
    if assignment.device.type != "cpu" or assignment.numel() == 0 \
            or is_compiling():
        return
    lo, hi = torch.aminmax(assignment)  # one pass (each extra pass is a parallel region)
    if int(lo) < 0 or int(hi) >= num_groups:
        bad = (assignment < 0) | (assignment >= num_groups)
        i, j = (int(v) for v in bad.nonzero()[0])
        raise ValueError(f"{op}: assignment[{i}, {j}] = {int(assignment[i, j])} "
                         f"is not a group label in [0, {num_groups})")


def _validate(features, grad, assignment, num_groups) -> None:
    """The checks of csrc/ops/group_inhibition_mask.cpp but the labels' values (same
    messages), for the backends that do not run it, the fake kernel and clearer errors."""
    for name, t in (("features", features), ("grad", grad)):
        require_tensor("group_inhibition_mask", name, t)
        if t.ndim != 4:
            raise ValueError(f"group_inhibition_mask: {name} must be 4-D (B, C, H, W), got "
                             f"shape {tuple(t.shape)}")
        if t.dtype not in (torch.float32, torch.float64):
            raise ValueError(f"group_inhibition_mask: {name} must be float32 or float64, got "
                             f"{t.dtype} (cast half/bfloat16 maps to float32)")
    if grad.shape != features.shape:
        raise ValueError(f"group_inhibition_mask: grad has shape {tuple(grad.shape)} but "
                         f"features have {tuple(features.shape)}; G is dL/dF, the same shape")
    if grad.dtype != features.dtype:
        raise ValueError(f"group_inhibition_mask: grad has dtype {grad.dtype} but features "
                         f"have {features.dtype}; they must match")
    if grad.device != features.device:
        raise ValueError(f"group_inhibition_mask: grad is on {grad.device} but features are "
                         f"on {features.device}")
    check_assignment("group_inhibition_mask", features, assignment, num_groups)


# ----------------------------------------------------------------------------- fake kernel


def _fake(features, grad, assignment, num_groups):
    _validate(features, grad, assignment, num_groups)
    return torch.empty(features.shape, dtype=features.dtype, device=features.device)


_OP, _OP_EAGER = backend.native_op("group_inhibition_mask", {"group_inhibition_mask": _fake})


# ----------------------------------------------------------------------------- triton backend


@torch.library.custom_op("robustops::group_inhibition_mask_triton", mutates_args=())
def _group_inhibition_mask_triton(features: Tensor, grad: Tensor, assignment: Tensor,
                                  num_groups: int) -> Tensor:
    from ..triton.group_inhibition_mask import group_inhibition_mask_triton
    _check_labels(assignment, num_groups)
    out = torch.empty(features.shape, dtype=features.dtype, device=features.device)
    if out.numel() > 0:
        group_inhibition_mask_triton(out, features.contiguous(), grad.contiguous(),
                                     assignment.contiguous(), num_groups)
    return out


_group_inhibition_mask_triton.register_fake(_fake)


def _setup_context(ctx, inputs, output):
    # The mask is a constant of the re-forward: no gradient flows through it.
    ctx.mark_non_differentiable(output)


def _backward(ctx, grad_out):
    return None, None, None, None


_group_inhibition_mask_triton.register_autograd(_backward, setup_context=_setup_context)


# ----------------------------------------------------------------------------- public API


def _python_backend(name: str, features, grad, assignment, num_groups) -> Tensor:
    """The mask on the reference or triton backend (checked in Python, same messages)."""
    _validate(features, grad, assignment, num_groups)
    features, grad = features.detach(), grad.detach()
    if name == "triton":
        return _group_inhibition_mask_triton(features, grad, assignment, num_groups)
    _check_labels(assignment, num_groups)
    return group_inhibition_mask_reference(features, grad, assignment, num_groups)


def group_inhibition_mask(features: Tensor, grad: Tensor, assignment: Tensor,
                          num_groups: int) -> Tensor:
    """TENET's inhibition mask (B, C, H, W) from F, G = dL/dF and the channel grouping.

    features, grad: (B, C, H, W) float32 or float64, one dtype and device; assignment:
    (B, C) int64 group labels in [0, num_groups); num_groups: K in [1, C]. Returns the
    mask in features' dtype, contiguous, without gradient (multiply F by it).

    A flat group map (std <= 1024 eps |mean|, eps of features' dtype) gets mask 0.5
    everywhere: its z-score would only amplify rounding noise (see the module docstring).
    """
    if type(num_groups) is not int:
        _validate(features, grad, assignment, num_groups)  # e.g. a bool or float K
    try:
        name = backend.python_path(features, OP, BACKENDS)
        if name is None:
            op = _OP if is_compiling() else _OP_EAGER
            return op(features, grad, assignment, num_groups)
    except (TypeError, AttributeError, RuntimeError):
        _validate(features, grad, assignment, num_groups)  # clearer messages
        raise
    return _python_backend(name, features, grad, assignment, num_groups)
