"""Input x gradient (Shrikumar et al., 2016): the input times its gradient."""
from __future__ import annotations

from torch import Tensor, nn

from .targets import Output, Target, check_input, check_output, input_gradient, resolve_target

__all__ = ["input_x_gradient"]


def input_x_gradient(model: nn.Module, x: Tensor, target: Target = None, *,
                     output: Output = "logit", create_graph: bool = False) -> Tensor:
    """x * d output / d x, (B, ...) like x (captum.attr.InputXGradient).

    Arguments as for saliency; create_graph=True keeps the result differentiable.
    """
    check_input("input_x_gradient", model, x)
    output = check_output(output)
    t = resolve_target("input_x_gradient", model, x, target)
    return x * input_gradient(model, x, t, output, create_graph)
