"""PGD (Madry et al.): iterated fused pgd_step from a random start, L-inf or L2; FGSM."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ..arguments import positive_int
from .base import Attack, Eps, State, check_eps


class PGD(Attack):
    """Projected gradient ascent on a per-sample loss.

    steps: iterations (>= 1); alpha: step size, float or (B,) tensor, default
    2.5 * eps / steps (Madry et al.'s rule); see Attack for the other arguments.
    Each step is one forward + backward and one fused `pgd_step_` (no host sync); lo/hi may
    be per channel (see Attack).
    """

    per_channel_bounds = True

    def __init__(self, model, eps: Eps = 8 / 255, alpha: Optional[Eps] = None, steps: int = 10,
                 **kwargs):
        # eps, alpha, steps also positional, in torchattacks' order: PGD(model, eps, alpha, steps).
        super().__init__(model, eps=eps, **kwargs)
        self.steps = positive_int(steps, "steps")
        self.alpha = None if alpha is None else check_eps(alpha, "alpha")

    def _alpha_for(self, eps: Eps) -> Eps:
        if self.alpha is not None:
            return self.alpha
        return 2.5 * eps / self.steps

    def _start(self, x0: Tensor, x_nat: Tensor, y: Tensor, target: Optional[Tensor],
               eps: Eps, ids: Optional[Tensor]) -> State:
        alpha = self._alpha_for(eps)
        if isinstance(self.alpha, Tensor):
            alpha = self.alpha.to(x0.device, torch.float32)
            alpha = alpha if ids is None else alpha[ids]
        if isinstance(alpha, Tensor) and alpha.shape[0] != x0.shape[0]:
            raise ValueError(f"per-sample alpha has {alpha.shape[0]} entries for a batch of "
                             f"{x0.shape[0]}")
        state: State = {"x": x0, "x_nat": x_nat, "y": y, "eps": eps, "alpha": alpha}
        if target is not None:
            state["target"] = target
        return state

    def _step(self, state: State, k: int) -> Tensor:
        _, grad, logits = self.loss_and_grad(state["x"], state["y"], state.get("target"))
        self._pgd_step_(state["x"], state["x_nat"], grad, state["eps"], state["alpha"])
        return logits


class FGSM(PGD):
    """Fast gradient sign method: one step of size eps (alpha), no random start by default."""

    def __init__(self, model, eps: Eps = 8 / 255, *, alpha: Optional[Eps] = None,
                 random_start: bool = False, **kwargs):  # FGSM(model, eps), as torchattacks
        super().__init__(model, eps=eps, alpha=eps if alpha is None else alpha, steps=1,
                         random_start=random_start, **kwargs)
