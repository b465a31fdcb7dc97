"""APGD (Croce & Hein, 2020): PGD with momentum and an adaptive, per-sample step size.

The step size starts at 2 * eps and is halved at checkpoints where the loss has
stalled (too few increasing steps since the last checkpoint, or no new best
loss with an unchanged step size); the iterate then restarts from the best
point found. Every quantity is per sample and every branch is a mask, so a step
has no host synchronisation; checkpoints are fixed iteration numbers.
"""
from __future__ import annotations

import math
from typing import List, Optional

import torch
from torch import Tensor

from ..arguments import positive_int, unit_fraction
from .base import Attack, Eps, State


def apgd_checkpoints(n_iter: int) -> List[int]:
    """Iterations w_j = ceil(p_j * n_iter), p_0 = 0, p_1 = 0.22,
    p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)."""
    p = [0.0, 0.22]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    w = sorted({math.ceil(q * n_iter) for q in p if q <= 1})
    return [v for v in w if v < n_iter] if len(w) > 1 else w


def _rows(t: Tensor, like: Tensor) -> Tensor:
    return t.reshape(-1, *([1] * (like.ndim - 1)))


class APGD(Attack):
    """APGD-CE / APGD-DLR (loss='ce' | 'dlr'), L-inf or L2.

    steps: iterations N_iter (>= 1); rho: fraction of increasing steps below
    which a checkpoint halves the step (0.75); momentum: weight alpha of the new
    direction (0.75). See Attack for eps, norm, restarts, seed, eot_samples, and lo/hi
    (which may be per channel).
    """

    per_channel_bounds = True

    def __init__(self, model, *, eps: Eps = 8 / 255, steps: int = 100, rho: float = 0.75,
                 momentum: float = 0.75, **kwargs):
        super().__init__(model, eps=eps, **kwargs)
        self.steps = positive_int(steps, "steps")
        self.rho, self.momentum = unit_fraction(rho, "rho"), unit_fraction(momentum, "momentum")
        self.checkpoints = apgd_checkpoints(self.steps)

    def _project_(self, v: Tensor, state: State) -> Tensor:
        # pgd_step with alpha = 0 is a fused projection onto the eps-ball and
        # the box (x_nat stands in for the unused gradient).
        return self._pgd_step_(v, state["x_nat"], state["x_nat"], state["eps"], 0.0)

    def _start(self, x0: Tensor, x_nat: Tensor, y: Tensor, target: Optional[Tensor],
               eps: Eps, ids: Optional[Tensor]) -> State:
        b = x0.shape[0]
        eps_t = eps if isinstance(eps, Tensor) else torch.full((b,), eps, device=x0.device)
        state: State = {
            "x": x0, "x_prev": x0.clone(), "x_nat": x_nat, "y": y, "eps": eps,
            "eta": 2.0 * eps_t.float(),
            "x_max": x0.clone(), "g_max": torch.zeros_like(x0),
            "f_max": torch.full((b,), -math.inf, device=x0.device),
            "f_prev": torch.full((b,), -math.inf, device=x0.device),
            "count": torch.zeros(b, device=x0.device),
            "eta_ckpt": 2.0 * eps_t.float(),
            "fmax_ckpt": torch.full((b,), -math.inf, device=x0.device),
        }
        if target is not None:
            state["target"] = target
        return state

    def _step(self, state: State, k: int) -> Tensor:
        x = state["x"]
        f, g, logits = self.loss_and_grad(x, state["y"], state.get("target"))
        if k > 0:
            state["count"] += (f > state["f_prev"]).float()
        better = f > state["f_max"]
        state["x_max"] = torch.where(_rows(better, x), x, state["x_max"])
        state["g_max"] = torch.where(_rows(better, x), g, state["g_max"])
        state["f_max"] = torch.where(better, f, state["f_max"])
        if k in self.checkpoints and k > 0:
            j = self.checkpoints.index(k)
            span = k - self.checkpoints[j - 1]
            oscillating = state["count"] < self.rho * span
            stalled = (state["eta_ckpt"] == state["eta"]) & (state["fmax_ckpt"] == state["f_max"])
            reduce = oscillating | stalled
            state["eta"] = torch.where(reduce, state["eta"] / 2, state["eta"])
            rows = _rows(reduce, x)
            x = torch.where(rows, state["x_max"], x)
            g = torch.where(rows, state["g_max"], g)
            state["count"] = torch.zeros_like(state["count"])
            state["eta_ckpt"] = state["eta"].clone()
            state["fmax_ckpt"] = state["f_max"].clone()
        z = self._pgd_step_(x.clone(), state["x_nat"], g, state["eps"], state["eta"])
        if k == 0:
            x_next = z
        else:
            a = self.momentum
            x_next = self._project_(x + a * (z - x) + (1 - a) * (x - state["x_prev"]), state)
        state["x_prev"], state["x"], state["f_prev"] = x, x_next, f
        return logits

    def _result(self, state: State) -> Tensor:
        # The last iterate's loss was never computed: include it in the best.
        f = self.loss_and_grad_free(state["x"], state["y"], state.get("target"))
        better = f > state["f_max"]
        return torch.where(_rows(better, state["x"]), state["x"], state["x_max"])

    def loss_and_grad_free(self, x: Tensor, y: Tensor, target: Optional[Tensor]) -> Tensor:
        from .losses import attack_loss
        with torch.no_grad():
            return attack_loss(self.model(x), y, self.loss, target)
