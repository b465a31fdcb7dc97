"""TRADES (Zhang et al., 2019): clean CE + beta * KL(p(x) || p(x_adv))."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ...arguments import non_negative
from ...attacks import PGD
from .base import Objective, accuracy


def _kl_to(p_clean_log: torch.Tensor):
    """Per-sample KL(p_clean || softmax(logits)) as an attack loss."""
    def loss(logits, y, target):
        return F.kl_div(F.log_softmax(logits.float(), 1), p_clean_log, reduction="none",
                        log_target=True).sum(1)
    return loss


def trades_adversarial(model, x, y, *, eps, alpha, steps, norm, seed):
    """TRADES' inner maximisation: PGD on KL(model(x) || model(x')) from x + 0.001 * N(0, 1)
    (a random start of radius 0.001), the clean distribution taken in eval mode."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        p_clean_log = F.log_softmax(model(x).float(), 1)
    model.train(was_training)
    atk = PGD(model, eps=eps, alpha=alpha, steps=steps, norm=norm, loss=_kl_to(p_clean_log),
              seed=seed)
    return atk.perturb(x, y, start=(x + 0.001 * torch.randn_like(x)).clamp(0, 1))


class TRADES(Objective):
    """The inner maximisation ascends the KL from a small random start (model in eval mode)."""

    name = "trades"

    def __init__(self, eps: float = 8 / 255, alpha: float = 2 / 255, steps: int = 10,
                 beta: float = 6.0, norm: str = "linf", seed: int = 0):
        self.eps, self.alpha, self.steps, self.beta, self.norm, self.seed = \
            eps, alpha, steps, non_negative(beta, "beta"), norm, seed
        self._calls = 0

    def compute(self, model, x, y, *, replay=0):
        self._calls += 1
        x_adv = trades_adversarial(model, x, y, eps=self.eps, alpha=self.alpha, steps=self.steps,
                                   norm=self.norm, seed=self.seed * 1_000_003 + self._calls)
        logits = model(x)
        logits_adv = model(x_adv)
        natural = F.cross_entropy(logits.float(), y)
        robust = F.kl_div(F.log_softmax(logits_adv.float(), 1), F.log_softmax(logits.float(), 1),
                          reduction="batchmean", log_target=True)
        return natural + self.beta * robust, {"acc": accuracy(logits, y),
                                              "adv_acc": accuracy(logits_adv, y), "kl": robust.detach()}

    def state_dict(self):
        return {"calls": self._calls}

    def load_state_dict(self, state):
        self._calls = int(state.get("calls", 0))
