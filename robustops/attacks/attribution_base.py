"""Shared pieces of the attribution attacks: the saliency map they compare and the result.

METHODS.md section 5: the map of an image is S = |sum_c IG_c| (zero baseline, the
true label, ig_steps path points), normalised to sum to W*H; an attack perturbs x
within an L-inf ball, keeping the label, to move S as far as possible; the metrics
(top-k intersection, Kendall tau, Spearman rho) compare S(x) with S(x~).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional, Union

import torch
from torch import Tensor, nn

from ..arguments import non_negative, positive_int, require_int
from ..attributions.integrated_gradients import integrated_gradients
from ..counter_rng import sample_index
from ..image_box import check_bounds
from ..ops.rank_metrics import kendall_tau
from .model_state import attack_state

__all__ = ["AttributionAttack", "AttributionAttackResult", "attribution_map"]


def attribution_map(model: nn.Module, x: Tensor, y: Tensor, *, ig_steps: int = 100,
                    internal_batch_size: Optional[int] = None,
                    create_graph: bool = False) -> Tensor:
    """S = |sum_c IG_c(x)| (zero baseline, target y) normalised to sum to H*W: (B, H*W).

    x: (B, C, H, W); with create_graph=True the map is differentiable in x (the attack's
    objective). A map that is zero everywhere stays zero.
    """
    ig = integrated_gradients(model, x, y, steps=ig_steps, internal_batch_size=internal_batch_size,
                              create_graph=create_graph)
    s = ig.sum(1).abs().flatten(1)
    hw = s.shape[1]
    total = s.sum(1, keepdim=True)
    return s * (hw / torch.where(total > 0, total, torch.ones_like(total)))


@dataclasses.dataclass
class AttributionAttackResult:
    """x_adv (B, C, H, W); the maps S(x) and S(x_adv) (B, H*W) of the attacked model;
    kendall (B,): Kendall tau between them (what restarts minimise); label_kept (B,):
    the model still predicts y on x_adv."""

    x_adv: Tensor
    map_nat: Tensor
    map_adv: Tensor
    kendall: Tensor
    label_kept: Tensor


class AttributionAttack:
    """Base of the attribution attacks: validation, maps, restarts chosen by Kendall tau.

    Subclasses implement `_perturb(x_nat, y, map_nat, index, restart) -> x_adv`.
    model: returns logits (B, K) for images (B, C, H, W) in [lo, hi]; eps: L-inf radius;
    ig_steps: IG path points of the maps (METHODS.md: 100); internal_batch_size: model
    inputs per IG forward pass; restarts: independent runs, each sample keeps the one
    with the lowest Kendall tau; seed: keys every random draw (with the sample index).
    """

    restarts = 1

    def __init__(self, model: nn.Module, *, eps: float, ig_steps: int = 100,
                 internal_batch_size: Optional[int] = None, seed: int = 0, lo: float = 0.0,
                 hi: float = 1.0):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module returning logits, got "
                            f"{type(model).__name__}")
        self.model = model
        self.eps = non_negative(eps, "eps")
        self.ig_steps = positive_int(ig_steps, "ig_steps")
        if internal_batch_size is not None:
            positive_int(internal_batch_size, "internal_batch_size")
        self.internal_batch_size = internal_batch_size
        self.seed = require_int(seed, "seed")
        self.lo, self.hi = check_bounds(lo, hi, type(self).__name__)
        if isinstance(self.lo, Tensor):
            raise TypeError(f"{type(self).__name__} takes one lo and one hi for every channel "
                            "(a number each), not per-channel bounds")

    def map(self, x: Tensor, y: Tensor, create_graph: bool = False) -> Tensor:
        """The attacked model's saliency map S(x), (B, H*W)."""
        return attribution_map(self.model, x, y, ig_steps=self.ig_steps,
                               internal_batch_size=self.internal_batch_size,
                               create_graph=create_graph)

    def _check(self, x: Tensor, y: Tensor) -> None:
        if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim != 4:
            raise ValueError("x must be a floating tensor of images (B, C, H, W) in [lo, hi]")
        if x.shape[0] == 0:
            raise ValueError("empty batch: nothing to attack")
        if not isinstance(y, Tensor) or y.dtype != torch.int64 or tuple(y.shape) != (x.shape[0],):
            raise ValueError(f"y must be an int64 tensor of shape ({x.shape[0]},)")

    def _perturb(self, x_nat: Tensor, y: Tensor, map_nat: Tensor, index: Tensor,
                 restart: int) -> Tensor:
        raise NotImplementedError

    def attack(self, x: Tensor, y: Tensor, *,
               index: Union[None, int, Tensor] = None) -> AttributionAttackResult:
        """Attack (x, y): x (B, C, H, W) in [lo, hi], y (B,) labels (use correctly classified
        samples: the metrics are defined on those). index: global sample indices keying the
        random draws (None: 0..B-1, or an int offset)."""
        self._check(x, y)
        idx = sample_index(x.shape[0], index, x.device)
        with attack_state(self.model, "eval"):
            x_nat = x.detach()
            map_nat = self.map(x_nat, y).detach()
            best = None
            for r in range(self.restarts):
                x_adv = self._perturb(x_nat, y, map_nat, idx, r).detach()
                map_adv = self.map(x_adv, y).detach()
                tau = kendall_tau(map_nat, map_adv).to(x.device)
                # A constant map has no tau (NaN): it ranks after every defined one.
                tau = torch.where(torch.isnan(tau), torch.full_like(tau, math.inf), tau)
                if best is None:
                    best = [x_adv, map_adv, tau]
                else:
                    better = tau < best[2]
                    best[0] = torch.where(better[:, None, None, None], x_adv, best[0])
                    best[1] = torch.where(better[:, None], map_adv, best[1])
                    best[2] = torch.where(better, tau, best[2])
            with torch.no_grad():
                kept = self.model(best[0]).argmax(1) == y
        tau = torch.where(torch.isinf(best[2]), torch.full_like(best[2], math.nan), best[2])
        return AttributionAttackResult(best[0], map_nat, best[1], tau, kept)

    def perturb(self, x: Tensor, y: Tensor, *, index: Union[None, int, Tensor] = None) -> Tensor:
        """Only the perturbed images (B, C, H, W)."""
        return self.attack(x, y, index=index).x_adv

    __call__ = perturb
