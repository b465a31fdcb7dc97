"""What an attribution differentiates: one scalar per sample, chosen by `output` and `target`.

Shared by every attribution method (saliency, input x gradient, integrated gradients,
SmoothGrad), so they agree on targets and on the scalar they explain:

- ``"logit"``: the target class's logit (captum's convention for a model returning logits);
- ``"prob"``: its softmax probability (CACR's attributions, METHODS.md section 5);
- ``"log_prob"``: its log-softmax;
- ``"ce"``: the cross-entropy loss with the target as label (IG^CE of the RAR regularisers);
- or a callable ``f(model_output (N, K), target (N,)) -> (N,)``.
"""
from __future__ import annotations

from numbers import Integral
from typing import Callable, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..arguments import require_int, require_tensor

__all__ = ["OUTPUTS", "Output", "Target", "check_output", "check_input", "resolve_target",
           "scalar_output"]

OUTPUTS = ("logit", "prob", "log_prob", "ce")
Output = Union[str, Callable[[Tensor, Tensor], Tensor]]
Target = Union[None, int, Tensor]


def check_output(output: Output) -> Output:
    if callable(output) or output in OUTPUTS:
        return output
    raise ValueError(f"output must be one of {', '.join(OUTPUTS)} or a callable "
                     f"(model_output, target) -> (N,), got {output!r}")


def check_input(fn: str, model, x) -> None:
    if not callable(model):
        raise TypeError(f"{fn}: model must be a callable (an nn.Module returning (B, K) "
                        f"outputs), got {type(model).__name__}")
    require_tensor(fn, "x", x, "a floating tensor (B, ...)")
    if not x.is_floating_point():
        raise ValueError(f"{fn}: x must be a floating tensor (B, ...), got {x.dtype}")
    if x.ndim < 2:
        raise ValueError(f"{fn}: x must be batched (B, ...), got shape {tuple(x.shape)}")


def resolve_target(fn: str, model: nn.Module, x: Tensor, target: Target) -> Tensor:
    """(B,) int64 targets: an int for every sample, a (B,) tensor, or None (the predicted class)."""
    b = x.shape[0]
    if target is None:
        with torch.no_grad():
            return model(x).argmax(1)
    what = f"an int, a ({b},) integer tensor or None"
    if isinstance(target, Integral):  # a bool too: require_int refuses it
        target = require_int(target, "target", where=fn, what=what)
        return torch.full((b,), target, dtype=torch.int64, device=x.device)
    if not isinstance(target, Tensor):
        raise TypeError(f"{fn}: target must be {what}, got {type(target).__name__}")
    if target.dtype not in (torch.int64, torch.int32) or tuple(target.shape) != (b,):
        raise ValueError(f"{fn}: target must be {what}, got {tuple(target.shape)} "
                         f"{target.dtype}")
    return target.to(device=x.device, dtype=torch.int64)


def scalar_output(out: Tensor, target: Tensor, output: Output) -> Tensor:
    """(N,) scalars to differentiate from the model's (N, K) outputs."""
    if callable(output):
        res = output(out, target)
        if not isinstance(res, Tensor) or tuple(res.shape) != (out.shape[0],):
            got = tuple(res.shape) if isinstance(res, Tensor) else type(res).__name__
            raise ValueError(f"output callable must return a ({out.shape[0]},) tensor, got {got}")
        return res
    if out.ndim != 2:
        raise ValueError(f"the model must return (N, K) outputs, got shape {tuple(out.shape)}")
    if output == "ce":
        return F.cross_entropy(out, target, reduction="none")
    if output == "logit":
        z = out
    elif output == "prob":
        z = torch.softmax(out, 1)
    else:
        z = torch.log_softmax(out, 1)
    return z.gather(1, target[:, None])[:, 0]


def leaf_for_grad(x: Tensor, create_graph: bool) -> Tensor:
    """The tensor to differentiate with respect to.

    With create_graph and an x that already requires grad, x itself (so the attribution
    stays a differentiable function of whatever x came from); otherwise a detached leaf.
    """
    if create_graph and x.requires_grad:
        return x
    return x.detach().requires_grad_(True)


def input_gradient(model: nn.Module, x: Tensor, target: Tensor, output: Output,
                   create_graph: bool) -> Tensor:
    """d output(model(x))[b] / d x[b] for every sample b (B, ...)."""
    with torch.enable_grad():
        xr = leaf_for_grad(x, create_graph)
        y = scalar_output(model(xr), target, output)
        (g,) = torch.autograd.grad(y.sum(), xr, create_graph=create_graph)
    return g
