"""FAB (Croce & Hein, 2020): minimal-norm adversarial examples by projections onto the
linearised decision boundary, L-inf or L2; targeted (FAB-T) or untargeted.

Each step linearises the boundary between the true class and one other class at the
iterate, projects both the iterate and the clean input onto that hyperplane inside the
image box (the minimal-norm step: the op robustops.ops.box_hyperplane_step, fused on the
CPU), moves to a convex combination biased towards the clean input (alpha <= alpha_max),
extrapolated by eta; an iterate that fools the model is recorded if closer than the best
so far and pulled back towards the clean input by beta. Defaults are the reference's
(100 steps, alpha_max 0.1, eta 1.05, beta 0.9; FAB-T: 9 target classes, 1 restart each,
no random start).

As a state machine (attacks/base.py) `state["x"]` is the best adversarial example found
within eps (the clean input until one is) and `state["logits"]` its logits: a sample
counts as fooled only by a point inside the eps-ball, so Attack.robust_mask's early exit
(stop as soon as one is found) and batched restarts (target classes) apply.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import Tensor

from ..arguments import positive_int, require_real, unit_fraction
from ..ops.box_hyperplane_step import box_hyperplane_step
from ..random_init import random_init
from .apgd_targeted import target_by_rank
from .base import Attack, Eps, State
from .row_keys import RowKeys


def _norm(v: Tensor, norm: str) -> Tensor:
    """(B,) per-sample L-inf or L2 norm of v (B, ...)."""
    v = v.flatten(1)
    return v.abs().amax(1) if norm == "linf" else v.norm(dim=1)


def _rows(t: Tensor, like: Tensor) -> Tensor:
    return t.reshape(-1, *([1] * (like.ndim - 1)))


class FAB(RowKeys, Attack):
    """FAB / FAB-T; targeted=True (default, AutoAttack's FAB-T) attacks the top
    `n_target_classes` other classes in turn, `restarts` runs each (random start after
    the first); targeted=False linearises towards the nearest boundary over all classes
    (one backward pass per class; AutoAttack's 'plus' version).

    steps: iterations; alpha_max, eta, beta: the reference's step parameters. See Attack
    for eps, norm, seed, lo, hi. FAB computes its own gradients (no EOT, no loss name).
    """

    def __init__(self, model, *, eps: Eps = 8 / 255, steps: int = 100, targeted: bool = True,
                 n_target_classes: int = 9, restarts: int = 1, alpha_max: float = 0.1,
                 eta: float = 1.05, beta: float = 0.9, **kwargs):
        for bad in ("loss", "random_start", "eot_samples"):
            if bad in kwargs:
                raise ValueError(f"FAB takes no {bad}")
        self.targeted = bool(targeted)
        self.n_target_classes = positive_int(n_target_classes, "n_target_classes") if targeted else 1
        self.restarts_per_target = positive_int(restarts, "restarts")
        super().__init__(model, eps=eps, restarts=self.n_target_classes * self.restarts_per_target,
                         **kwargs)
        self.steps = positive_int(steps, "steps")
        self.alpha_max = unit_fraction(alpha_max, "alpha_max")
        self.beta = unit_fraction(beta, "beta")
        self.eta = require_real(eta, "eta", low=1, what="a number >= 1 (the extrapolation "
                                "factor)")

    def _initial_point(self, x_nat: Tensor, eps, index: Tensor, restart: int) -> Tensor:
        if restart % self.restarts_per_target == 0:
            return x_nat.clone()
        # The reference's later restarts start at half eps from the clean input.
        return random_init(x_nat, eps * 0.5, self.norm, self.seed, index=index, restart=restart,
                           lo=self.lo, hi=self.hi)

    def _start(self, x0: Tensor, x_nat: Tensor, y: Tensor, target: Optional[Tensor],
               eps: Eps, ids: Optional[Tensor]) -> State:
        _, restart = self._row_keys(x0.shape[0], x0.device)
        if target is None and self.targeted:
            target = target_by_rank(self.model, x_nat, restart // self.restarts_per_target + 2,
                                    self.n_target_classes)
        logits = self.model(x_nat).detach()
        state: State = {"x": x_nat.clone(), "logits": logits, "x1": x0, "x_nat": x_nat, "y": y,
                        "eps": eps,
                        "best": torch.full((x0.shape[0],), math.inf, device=x0.device)}
        if target is not None:
            state["target"] = target
        return state

    def _boundary(self, x1: Tensor, y: Tensor, target: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        """(f (B,), g (B, ...)): f = z_other - z_y at x1 and its input gradient, `other` the
        target, or (untargeted) the class whose linearised boundary is nearest."""
        with torch.enable_grad():
            xr = x1.detach().requires_grad_(True)
            z = self.model(xr).float()
            z_y = z.gather(1, y[:, None])[:, 0]
            if target is not None:
                f = z.gather(1, target[:, None])[:, 0] - z_y
                (g,) = torch.autograd.grad(f.sum(), xr)
                return f.detach(), g
            k = z.shape[1]
            grads = torch.stack([torch.autograd.grad(z[:, j].sum(), xr, retain_graph=j < k - 1)[0]
                                 for j in range(k)], dim=1)                    # (B, K, ...)
        f = (z - z_y[:, None]).detach()
        g = grads - grads.gather(1, _rows(y, grads[:, 0]).unsqueeze(1).expand_as(grads[:, :1]))
        dual = g.flatten(2).abs().sum(2) if self.norm == "linf" else g.flatten(2).norm(dim=2)
        dist = f.abs() / (dual + 1e-12)
        dist = dist.scatter(1, y[:, None], math.inf)
        j = dist.argmin(1)
        pick = j.reshape(-1, 1, *([1] * (g.ndim - 2))).expand(-1, 1, *g.shape[2:])
        return f.gather(1, j[:, None])[:, 0], g.gather(1, pick)[:, 0]

    def _step(self, state: State, k: int) -> Tensor:
        x1, x_nat = state["x1"], state["x_nat"]
        f, g = self._boundary(x1, state["y"], state.get("target"))
        b = x1.shape[0]
        w = g.flatten(1)
        # Hyperplane of the linearised boundary: w.z = w.x1 - f.
        plane = (w * x1.flatten(1)).sum(1) - f
        d = box_hyperplane_step(torch.cat([x1.flatten(1), x_nat.flatten(1)]), torch.cat([w, w]),
                                torch.cat([plane, plane]), self.norm, self.lo, self.hi)
        d1, d2 = d[:b].reshape(x1.shape), d[b:].reshape(x1.shape)
        a1 = _norm(d1, self.norm).clamp_min(1e-8)
        a2 = _norm(d2, self.norm).clamp_min(1e-8)
        alpha = _rows((a1 / (a1 + a2)).clamp(0, self.alpha_max), x1)
        x1 = ((x1 + self.eta * d1) * (1 - alpha) + (x_nat + self.eta * d2) * alpha).clamp(self.lo,
                                                                                      self.hi)
        logits = self.model(x1).detach()
        fooled = logits.argmax(1) != state["y"]
        dist = _norm(x1 - x_nat, self.norm)
        closer = fooled & (dist < state["best"])
        eps = state["eps"]
        within = closer & (dist <= eps)
        old = state["logits"]
        state["best"] = torch.where(closer, dist, state["best"])
        state["x"] = torch.where(_rows(within, x1), x1, state["x"])
        state["logits"] = torch.where(within[:, None], logits, old)
        state["x1"] = torch.where(_rows(fooled, x1), x_nat + (x1 - x_nat) * self.beta, x1)
        return old
