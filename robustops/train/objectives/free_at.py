"""Free AT (Shafahi et al., 2019): m replays of each minibatch, one perturbation update each."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ...arguments import positive_int
from ...ops.pgd_step import pgd_step_
from .base import Objective, accuracy


class FreeAT(Objective):
    """Each replay: one optimizer step on CE(x + delta) and, from the same backward
    pass, one signed-gradient step on delta (kept across minibatches, as in the paper)."""

    name = "free_at"

    def __init__(self, eps: float = 4 / 255, replays: int = 4, lo: float = 0.0, hi: float = 1.0):
        self.replays = positive_int(replays, "replays")
        self.eps, self.lo, self.hi = float(eps), lo, hi
        self.delta: Optional[Tensor] = None
        self._x_adv: Optional[Tensor] = None
        self._x: Optional[Tensor] = None

    def compute(self, model, x, y, *, replay=0):
        if self.delta is None or self.delta.shape != x.shape:
            self.delta = torch.zeros_like(x)
        x_adv = (x + self.delta).clamp(self.lo, self.hi).requires_grad_(True)
        self._x_adv, self._x = x_adv, x
        logits = model(x_adv)
        return F.cross_entropy(logits.float(), y), {"adv_acc": accuracy(logits, y)}

    def after_backward(self):
        if self._x_adv is None or self._x_adv.grad is None:
            return
        with torch.no_grad():
            x_new = self._x_adv.detach().clone()
            pgd_step_(x_new, self._x, self._x_adv.grad, self.eps, self.eps, lo=self.lo, hi=self.hi)
            self.delta = x_new - self._x
        self._x_adv = self._x = None

    def state_dict(self):
        return {"delta": self.delta}

    def load_state_dict(self, state):
        self.delta = state.get("delta")
