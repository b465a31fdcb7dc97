"""Plain cross-entropy training."""
from __future__ import annotations

import torch.nn.functional as F

from .base import Objective, accuracy


class CrossEntropy(Objective):
    """CE(model(x), y), optionally with label smoothing."""

    name = "ce"

    def __init__(self, label_smoothing: float = 0.0):
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def compute(self, model, x, y, *, replay=0):
        logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing)
        return loss, {"acc": accuracy(logits, y)}
