"""CACR + WACR: attribution regularisers on top of IG-SUM-NORM's adversarial example.

METHODS.md section 5, with x' from the IG-SUM-NORM inner maximisation:

    L = CE(f(x'), y) + lambda [L_CACR + L_WACR]
    L_CACR = KL(U || q_neg) - KL(U || q_true)
        q_true: softmax over pixels of the channel-summed IG of the true-class
        probability from 0 to x'; q_neg: the same for the most probable wrong class
        (at x'); U uniform. Fused op: robustops::pixel_softmax_kl.
    L_WACR = sum_{sign B_j = sign D_j} B_j D_j + sum_{signs differ} |D_j|
        B: IG of the true-class probability from 0 to x; D = -IG^CE(x -> x').
        Fused op: robustops::sign_matched_product.

Every IG uses m path points with create_graph=True (the parameter gradient is a
double backprop through the model); q_true and q_neg share one path (one forward
pass per chunk, two backward passes). Defaults are METHODS.md's (Flower): m = 20,
approx_factor 4 (inner IG: 5 points), lambda 0.1, eps 8/255, PGD 7 steps of 2/255.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

from ...attributions.integrated_gradients import integrated_gradients, integrated_gradients_multi
from ...ops.pixel_softmax_kl import pixel_softmax_kl
from ...ops.sign_matched_product import sign_matched_product
from .base import accuracy
from ...arguments import non_negative
from .rar import _RARObjective, ce_loss, model_mode

__all__ = ["CACRWACR", "most_likely_wrong_class"]


def most_likely_wrong_class(logits: Tensor, y: Tensor) -> Tensor:
    """(B,) the highest-probability class other than y."""
    masked = logits.detach().clone()
    masked.scatter_(1, y[:, None], float("-inf"))
    return masked.argmax(1)


class CACRWACR(_RARObjective):
    """CE at IG-SUM-NORM's x' + lambda (L_CACR + L_WACR).

    eps, alpha, steps: the inner PGD; beta: the inner IG-SUM-NORM's norm weight;
    m: path points of every outer IG (the inner uses m // approx_factor); lam: the
    regularisers' weight.
    """

    name = "cacr_wacr"

    def __init__(self, eps: float = 8 / 255, alpha: float = 2 / 255, steps: int = 7,
                 lam: float = 0.1, beta: float = 1.0, m: int = 20, approx_factor: int = 4,
                 random_start: bool = True, attribution_mode: str = "eval",
                 internal_batch_size: Optional[int] = None, seed: int = 0):
        super().__init__(eps=eps, alpha=alpha, steps=steps, m=m, approx_factor=approx_factor,
                         random_start=random_start, attribution_mode=attribution_mode,
                         internal_batch_size=internal_batch_size, seed=seed)
        self.lam = non_negative(lam, "lam")
        self.beta = non_negative(beta, "beta")

    def adversarial(self, model, x, y) -> Tensor:
        return self._inner(model, x, y, beta=self.beta, include_ce=True)

    def regularisers(self, model, x, x_adv, y) -> Tuple[Tensor, Tensor]:
        """Per-sample (L_CACR, L_WACR), each (B,), differentiable in the parameters."""
        ibs = self.internal_batch_size
        with model_mode(model, self.attribution_mode):
            with torch.no_grad():
                neg = most_likely_wrong_class(model(x_adv), y)
            a_true, a_neg = integrated_gradients_multi(
                model, x_adv, [y, neg], steps=self.m, output="prob", create_graph=True,
                internal_batch_size=ibs)
            cacr = pixel_softmax_kl(a_neg) - pixel_softmax_kl(a_true)
            b = integrated_gradients(model, x, y, steps=self.m, output="prob", create_graph=True,
                                     internal_batch_size=ibs)
            d = -integrated_gradients(model, x_adv, y, baseline=x, steps=self.m, output="ce",
                                      create_graph=True, internal_batch_size=ibs)
            wacr = sign_matched_product(b, d)
        return cacr, wacr

    def loss(self, model, x, x_adv, y) -> Tuple[Tensor, Dict[str, Tensor]]:
        """The outer loss at a given x_adv (a constant)."""
        logits = model(x_adv)
        ce = ce_loss(logits, y)
        cacr, wacr = self.regularisers(model, x, x_adv, y)
        loss = ce + self.lam * (cacr + wacr).mean()
        return loss, {"adv_acc": accuracy(logits, y), "cacr": cacr.detach().mean(),
                      "wacr": wacr.detach().mean()}

    def compute(self, model, x, y, *, replay=0):
        return self.loss(model, x, self.adversarial(model, x, y), y)
