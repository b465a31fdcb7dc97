"""The random-sign perturbation baseline of attribution attacks (Ghorbani et al., 2019).

x~ = clip(x + eps * s, lo, hi) with s a uniformly random sign per element, drawn
from counter-based uniforms keyed by (seed, global sample index, restart, element):
an attack-free reference for how much an attribution map moves under any
perturbation of the same size. Label-preserving like the top-k attack: a sample
whose label the perturbation changes keeps x. Restarts draw fresh signs; each sample
keeps the one with the lowest Kendall tau.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..counter_rng import counter_uniform
from ..arguments import positive_int
from .attribution_base import AttributionAttack

__all__ = ["RandomSignPerturbation", "RANDOM_SIGN_STREAM"]

# Counter stream of the signs ("RS"); restart r uses stream RANDOM_SIGN_STREAM + r.
RANDOM_SIGN_STREAM = 0x5253


class RandomSignPerturbation(AttributionAttack):
    """x + eps * random signs, clipped to [lo, hi]; see AttributionAttack for the arguments."""

    def __init__(self, model, *, eps: float, restarts: int = 1, **kwargs):
        super().__init__(model, eps=eps, **kwargs)
        self.restarts = positive_int(restarts, "restarts")

    def _perturb(self, x_nat: Tensor, y: Tensor, map_nat: Tensor, index: Tensor,
                 restart: int) -> Tensor:
        numel = math.prod(x_nat.shape[1:])
        u = counter_uniform(self.seed, RANDOM_SIGN_STREAM + restart, index, numel, x_nat.dtype)
        sign = torch.where(u < 0.5, -1.0, 1.0).to(x_nat.dtype).reshape(x_nat.shape)
        cand = (x_nat + self.eps * sign).clamp_(self.lo, self.hi)
        with torch.no_grad():
            keep = (self.model(cand).argmax(1) == y)[:, None, None, None]
        return torch.where(keep, cand, x_nat)
