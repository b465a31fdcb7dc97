"""Plain cross-entropy training."""
from __future__ import annotations

import torch.nn.functional as F

from ...arguments import require_real
from .base import Objective, accuracy


class CrossEntropy(Objective):
    """CE(model(x), y), optionally with label smoothing."""

    name = "ce"

    def __init__(self, label_smoothing: float = 0.0):
        self.label_smoothing = require_real(label_smoothing, "label_smoothing", low=0, high=1,
                                            high_open=True)

    def compute(self, model, x, y, *, replay=0):
        logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing)
        return loss, {"acc": accuracy(logits, y)}
