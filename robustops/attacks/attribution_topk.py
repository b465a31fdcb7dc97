"""The top-k attribution attack (Ghorbani et al., 2019), as METHODS.md section 5 runs it.

Given x with label y, and K = TopK(S(x)) the k most salient pixels of its map
S = |sum_c IG_c| (zero baseline, ig_steps points, normalised to sum to H*W), each
step descends the top-k mass of the surrogate's map:

    x~ <- clip_{B_inf(x, eps) n [lo, hi]}(x~ - alpha sign(grad_x~ sum_{i in K} S~_i(x~)))

where S~ is the map of the model with its ReLUs swapped for softplus(beta)
(robustops.attributions.softplus_surrogate; a ReLU network's map has a zero input
gradient almost everywhere). A step is kept only for the samples whose label (under
the real model) it keeps. Restart 0 starts at x, the others at a random point of the
ball (counter-based, keyed by sample index and restart; a start that changes the
label falls back to x); each sample keeps the restart whose final map has the lowest
Kendall tau with S(x). Defaults: 100 steps, 3 restarts, ig_steps 100.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from ..attributions.surrogate import softplus_surrogate
from ..ops.pgd_step import pgd_step
from ..random_init import random_init
from ..arguments import non_negative, positive_int, require_real
from .attribution_base import AttributionAttack, attribution_map

__all__ = ["TopKAttributionAttack"]


class TopKAttributionAttack(AttributionAttack):
    """Top-k attribution attack with the softplus surrogate, label-preserving steps and
    restarts keeping the lowest Kendall tau.

    k: pixels of the attacked top-k set (METHODS.md: MNIST 200, FMNIST / GTSRB 100,
    Flower 1000); eps: L-inf radius; alpha: step (default 2.5 eps / steps); steps,
    restarts; beta: softplus sharpness of the surrogate; other arguments as for
    AttributionAttack.
    """

    def __init__(self, model: nn.Module, *, eps: float, k: int, alpha: Optional[float] = None,
                 steps: int = 100, restarts: int = 3, beta: float = 10.0, ig_steps: int = 100,
                 internal_batch_size: Optional[int] = None, random_start: bool = True,
                 seed: int = 0, lo: float = 0.0, hi: float = 1.0):
        super().__init__(model, eps=eps, ig_steps=ig_steps,
                         internal_batch_size=internal_batch_size, seed=seed, lo=lo, hi=hi)
        self.k = positive_int(k, "k")
        self.steps = positive_int(steps, "steps")
        self.restarts = positive_int(restarts, "restarts")
        self.alpha = 2.5 * self.eps / self.steps if alpha is None else non_negative(alpha, "alpha")
        self.beta = require_real(beta, "beta", low=0, low_open=True)
        self.random_start = bool(random_start)

    def _label_kept(self, x: Tensor, y: Tensor) -> Tensor:
        with torch.no_grad():
            return self.model(x).argmax(1) == y

    def _perturb(self, x_nat: Tensor, y: Tensor, map_nat: Tensor, index: Tensor,
                 restart: int) -> Tensor:
        hw = map_nat.shape[1]
        if self.k > hw:
            raise ValueError(f"k = {self.k} exceeds the {hw} pixels of the maps")
        top = torch.zeros_like(map_nat).scatter_(
            1, torch.topk(map_nat, self.k, dim=1).indices, 1.0)
        x_t = x_nat.clone()
        if restart > 0 and self.random_start:
            start = random_init(x_nat, self.eps, "linf", self.seed, index=index, restart=restart,
                                lo=self.lo, hi=self.hi)
            keep = self._label_kept(start, y)[:, None, None, None]
            x_t = torch.where(keep, start, x_t)
        for _ in range(self.steps):
            with softplus_surrogate(self.model, self.beta), torch.enable_grad():
                xr = x_t.detach().requires_grad_(True)
                s = attribution_map(self.model, xr, y, ig_steps=self.ig_steps,
                                    internal_batch_size=self.internal_batch_size,
                                    create_graph=True)
                (g,) = torch.autograd.grad((s * top).sum(), xr)
            with torch.no_grad():
                # Descend the top-k mass: an ascent step on -grad.
                cand = pgd_step(x_t, x_nat, -g, self.eps, self.alpha, lo=self.lo, hi=self.hi)
                keep = self._label_kept(cand, y)[:, None, None, None]
                x_t = torch.where(keep, cand, x_t)
        return x_t
