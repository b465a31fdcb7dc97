"""PGD adversarial training (Madry et al., 2018)."""
from __future__ import annotations

import torch.nn.functional as F

from ...attacks import PGD
from .base import Objective, accuracy


class PGDAT(Objective):
    """CE on PGD examples found with the model in eval mode (METHODS.md).

    eps, alpha (default 2.5 * eps / steps), steps, norm: the inner PGD;
    random_start: one uniform start in the ball.
    """

    name = "pgd_at"

    def __init__(self, eps: float = 8 / 255, alpha=None, steps: int = 10, norm: str = "linf",
                 random_start: bool = True, attack_mode: str = "eval", seed: int = 0):
        self.eps, self.steps, self.norm = eps, steps, norm
        self.alpha = alpha
        self.random_start = random_start
        self.attack_mode = attack_mode
        self.seed = seed
        self._calls = 0

    def _attack(self, model):
        # A new seed per call: fresh random starts every batch, yet reproducible.
        self._calls += 1
        return PGD(model, eps=self.eps, alpha=self.alpha, steps=self.steps, norm=self.norm,
                   random_start=self.random_start, model_mode=self.attack_mode,
                   seed=self.seed * 1_000_003 + self._calls)

    def adversarial(self, model, x, y):
        return self._attack(model)(x, y)

    def compute(self, model, x, y, *, replay=0):
        x_adv = self.adversarial(model, x, y)
        logits = model(x_adv)
        return F.cross_entropy(logits.float(), y), {"adv_acc": accuracy(logits, y)}

    def state_dict(self):
        return {"calls": self._calls}

    def load_state_dict(self, state):
        self._calls = int(state.get("calls", 0))
