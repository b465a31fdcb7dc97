"""softplus_surrogate: swap a model's ReLUs for softplus(beta) inside a block, then back.

A ReLU network's input gradient is piecewise constant in the input, so the gradient
of an attribution (a gradient) with respect to the input is zero almost everywhere:
attribution attacks (Ghorbani et al., 2019; METHODS.md section 5) ascend the
gradient of a surrogate network whose ReLUs are replaced by softplus(beta x) / beta,
which tends to ReLU as beta grows and has a useful second derivative.

Only ``nn.ReLU`` modules can be swapped (functional ``F.relu`` calls inside a
forward are invisible to a module transform); the context warns when it finds none.
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Iterator, List, Tuple

from torch import nn

from ..arguments import require_real

__all__ = ["softplus_surrogate"]


@contextlib.contextmanager
def softplus_surrogate(model: nn.Module, beta: float = 10.0,
                       threshold: float = 20.0) -> Iterator[nn.Module]:
    """Inside the block, every nn.ReLU of `model` is an nn.Softplus(beta, threshold).

    The same ReLU instances are put back on exit, even on error (the model object
    is modified in place, so do not run it concurrently elsewhere). beta > 0.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"softplus_surrogate: model must be an nn.Module, got "
                        f"{type(model).__name__}")
    require_real(beta, "beta", where="softplus_surrogate", low=0, low_open=True,
                 what="a number > 0")
    swapped: List[Tuple[nn.Module, str, nn.Module]] = []
    try:
        for parent in list(model.modules()):
            # _modules directly: a ReLU registered under two names is swapped under both.
            for name, child in list(parent._modules.items()):
                if type(child) is nn.ReLU:
                    parent._modules[name] = nn.Softplus(beta=float(beta), threshold=threshold)
                    swapped.append((parent, name, child))
        if not swapped:
            warnings.warn("softplus_surrogate: the model has no nn.ReLU modules; functional "
                          "relu calls are not replaced, so second-order gradients may vanish",
                          RuntimeWarning, stacklevel=3)
        yield model
    finally:
        for parent, name, child in reversed(swapped):
            parent._modules[name] = child
