"""MAT: a mix of clean and PGD cross-entropy, (1 - beta) CE(x) + beta CE(x_adv)."""
from __future__ import annotations

import torch.nn.functional as F

from ...arguments import require_real
from .base import accuracy
from .pgd_at import PGDAT


class MAT(PGDAT):
    """beta in [0, 1]: weight of the adversarial term; the attack is PGDAT's."""

    name = "mat"

    def __init__(self, beta: float = 0.5, **pgd_kwargs):
        beta = require_real(beta, "beta", low=0, high=1, what="in [0, 1]")
        super().__init__(**pgd_kwargs)
        self.beta = beta

    def compute(self, model, x, y, *, replay=0):
        x_adv = self.adversarial(model, x, y)
        logits, logits_adv = model(x), model(x_adv)
        loss = (1 - self.beta) * F.cross_entropy(logits.float(), y) + \
            self.beta * F.cross_entropy(logits_adv.float(), y)
        return loss, {"acc": accuracy(logits, y), "adv_acc": accuracy(logits_adv, y)}
