"""Saliency (Simonyan et al., 2014): the input gradient of the explained output."""
from __future__ import annotations

from torch import Tensor, nn

from .targets import Output, Target, check_input, check_output, input_gradient, resolve_target

__all__ = ["saliency"]


def saliency(model: nn.Module, x: Tensor, target: Target = None, *, abs: bool = True,
             output: Output = "logit", create_graph: bool = False) -> Tensor:
    """|d output / d x| (or the signed gradient with abs=False), (B, ...) like x.

    model: returns (B, K); x: (B, ...) floating; target: int, (B,) int64 or None (the
    predicted class); output: see robustops.attributions.targets. create_graph=True
    keeps the result differentiable (in x and in the model's parameters) for use
    inside a loss. Matches captum.attr.Saliency(model).attribute(x, target, abs).
    """
    check_input("saliency", model, x)
    output = check_output(output)
    t = resolve_target("saliency", model, x, target)
    g = input_gradient(model, x, t, output, create_graph)
    return g.abs() if abs else g
