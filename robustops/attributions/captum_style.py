"""captum-shaped classes over robustops' functional attributions, for code written for captum:

    IntegratedGradients(model).attribute(inputs, baselines=None, target=y, n_steps=50,
                                         method="gausslegendre")
    Saliency(model).attribute(inputs, target=y, abs=True)
    InputXGradient(model).attribute(inputs, target=y)

Same arguments, defaults and values as captum.attr's classes (tests compare them), with
the fused, chunked computation of the functions underneath. What captum has and these do
not (several input tensors, additional_forward_args, multiply_by_inputs=False, targets
into outputs of more than two dimensions) is refused with a ValueError that says what to
do instead, never silently ignored. One difference: target=None explains the predicted
class (captum then needs a model with one output per sample).
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple, Union

import torch
from torch import Tensor

from ..arguments import require_int
from .input_x_gradient import input_x_gradient
from .integrated_gradients import METHODS, integrated_gradients
from .saliency import saliency
from .targets import Target, scalar_output

__all__ = ["IntegratedGradients", "Saliency", "InputXGradient"]

Inputs = Union[Tensor, Tuple[Tensor, ...]]
CaptumTarget = Union[None, int, Tensor, List[int]]


def _single_input(cls: str, inputs: Inputs) -> Tuple[Tensor, bool]:
    """(the input tensor, whether it came in a 1-tuple: the result goes back in one)."""
    if isinstance(inputs, Tensor):
        return inputs, False
    if isinstance(inputs, tuple) and len(inputs) == 1 and isinstance(inputs[0], Tensor):
        return inputs[0], True
    n = len(inputs) if isinstance(inputs, tuple) else None
    raise ValueError(f"{cls}.attribute: inputs must be one tensor (B, ...) or a 1-tuple of "
                     f"it, got {f'a tuple of {n}' if n is not None else type(inputs).__name__}"
                     "; models of several input tensors are not supported: concatenate them "
                     "or wrap the model so it takes one tensor")


def _no_forward_args(cls: str, additional_forward_args: Any) -> None:
    if additional_forward_args is not None:
        raise ValueError(f"{cls}.attribute: additional_forward_args is not supported; bind "
                         "them to the model instead, e.g. lambda x: model(x, *args)")


def _target(cls: str, target: CaptumTarget, x: Tensor) -> Target:
    """captum's target forms, as the functions take them: None, an int or a (B,) tensor."""
    if isinstance(target, Tensor) and target.ndim == 0:
        return int(target)
    if isinstance(target, list):
        for i, t in enumerate(target):
            require_int(t, f"target[{i}]", where=f"{cls}.attribute",
                        what="an int (one per sample; targets into outputs of more than two "
                             "dimensions, tuples, are not supported)")
        return torch.tensor(target, dtype=torch.int64, device=x.device)
    if isinstance(target, tuple):
        raise ValueError(f"{cls}.attribute: tuple targets (into outputs of more than two "
                         "dimensions) are not supported; give an int, a list or a (B,) tensor")
    return target


def _baseline(baselines: Any, x: Tensor) -> Optional[Tensor]:
    if isinstance(baselines, tuple):
        if len(baselines) != 1:
            raise ValueError("IntegratedGradients.attribute: baselines must match inputs: one "
                             f"baseline, got a tuple of {len(baselines)}")
        baselines = baselines[0]
    if isinstance(baselines, (int, float)) and not isinstance(baselines, bool):
        return torch.full_like(x, float(baselines))
    return baselines


def _wrap(result: Tensor, as_tuple: bool):
    return (result,) if as_tuple else result


class _Attribution:
    def __init__(self, forward_func: Callable[[Tensor], Tensor]):
        if not callable(forward_func):
            raise TypeError(f"{type(self).__name__}: forward_func must be a callable (an "
                            f"nn.Module returning (B, K)), got {type(forward_func).__name__}")
        self.forward_func = forward_func

    @property
    def multiplies_by_inputs(self) -> bool:
        return False


class Saliency(_Attribution):
    """captum.attr.Saliency: |d output[target] / d inputs| (abs=True) or the signed gradient."""

    def attribute(self, inputs: Inputs, target: CaptumTarget = None, abs: bool = True,
                  additional_forward_args: Any = None) -> Inputs:
        x, as_tuple = _single_input("Saliency", inputs)
        _no_forward_args("Saliency", additional_forward_args)
        return _wrap(saliency(self.forward_func, x, _target("Saliency", target, x), abs=abs),
                     as_tuple)


class InputXGradient(_Attribution):
    """captum.attr.InputXGradient: inputs * d output[target] / d inputs."""

    @property
    def multiplies_by_inputs(self) -> bool:
        return True

    def attribute(self, inputs: Inputs, target: CaptumTarget = None,
                  additional_forward_args: Any = None) -> Inputs:
        x, as_tuple = _single_input("InputXGradient", inputs)
        _no_forward_args("InputXGradient", additional_forward_args)
        return _wrap(input_x_gradient(self.forward_func, x, _target("InputXGradient", target, x)),
                     as_tuple)


class IntegratedGradients(_Attribution):
    """captum.attr.IntegratedGradients over robustops.attributions.integrated_gradients.

    multiply_by_inputs=False (captum's "global" attributions without the (x - baseline)
    factor) is not supported.
    """

    def __init__(self, forward_func: Callable[[Tensor], Tensor], multiply_by_inputs: bool = True):
        super().__init__(forward_func)
        if multiply_by_inputs is not True:
            raise ValueError("IntegratedGradients: multiply_by_inputs=False is not supported "
                             "(the path integral is always multiplied by inputs - baselines)")

    @property
    def multiplies_by_inputs(self) -> bool:
        return True

    def attribute(self, inputs: Inputs, baselines: Union[None, Tensor, int, float, tuple] = None,
                  target: CaptumTarget = None, additional_forward_args: Any = None,
                  n_steps: int = 50, method: str = "gausslegendre",
                  internal_batch_size: Optional[int] = None,
                  return_convergence_delta: bool = False):
        """IG from baselines (None: zeros; a number; a tensor broadcastable to inputs) to
        inputs along n_steps points of quadrature `method` (one of METHODS, captum's); with
        return_convergence_delta, also (B,) sum(attributions) - (f(inputs) - f(baselines))."""
        x, as_tuple = _single_input("IntegratedGradients", inputs)
        _no_forward_args("IntegratedGradients", additional_forward_args)
        if method not in METHODS:
            raise ValueError(f"IntegratedGradients.attribute: method {method!r} is not "
                             f"supported; choose one of {', '.join(METHODS)}")
        t = _target("IntegratedGradients", target, x)
        base = _baseline(baselines, x)
        attr = integrated_gradients(self.forward_func, x, t, baseline=base, steps=n_steps,
                                    method=method, internal_batch_size=internal_batch_size)
        if not return_convergence_delta:
            return _wrap(attr, as_tuple)
        return _wrap(attr, as_tuple), self.compute_convergence_delta(attr, base, x, t)

    def compute_convergence_delta(self, attributions: Tensor, start_point: Optional[Tensor],
                                  end_point: Tensor, target: Target = None) -> Tensor:
        """(B,) sum of each sample's attributions minus f(end)[t] - f(start)[t] (the
        completeness gap; it shrinks as n_steps grows)."""
        from .targets import resolve_target

        start = torch.zeros_like(end_point) if start_point is None else \
            torch.broadcast_to(start_point.to(end_point.dtype), end_point.shape)
        t = resolve_target("IntegratedGradients", self.forward_func, end_point, target)
        with torch.no_grad():
            gap = (scalar_output(self.forward_func(end_point), t, "logit")
                   - scalar_output(self.forward_func(start), t, "logit"))
        return attributions.reshape(attributions.shape[0], -1).sum(1) - gap
