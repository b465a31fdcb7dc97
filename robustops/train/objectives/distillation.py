"""Knowledge distillation: temperature-scaled KL to a teacher (e.g. a V1 ensemble) plus CE."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...arguments import require_real
from ...attacks.model_state import attack_state
from .base import Objective, accuracy


class Distillation(Objective):
    """alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE.

    teacher: a model returning logits or log-probabilities (an Ensemble returns the log
    of its mean softmax), run in eval mode without gradients; temperature T > 0;
    alpha in [0, 1]. The T^2 factor keeps the soft-target gradients' scale as T varies
    (Hinton et al., 2015).
    """

    name = "distill"

    def __init__(self, teacher: nn.Module, temperature: float = 4.0, alpha: float = 0.9):
        if not isinstance(teacher, nn.Module):
            raise TypeError(f"teacher must be an nn.Module, got {type(teacher).__name__}")
        self.teacher = teacher
        self.temperature = require_real(temperature, "temperature", low=0, low_open=True)
        self.alpha = require_real(alpha, "alpha", low=0, high=1)

    def compute(self, model, x, y, *, replay=0):
        # Every submodule's mode is restored as found (the teacher may mix modes).
        with attack_state(self.teacher, "eval"), torch.no_grad():
            t = self.teacher(x).float()
        logits = model(x)
        s = logits.float()
        temp = self.temperature
        kl = F.kl_div(F.log_softmax(s / temp, 1), F.log_softmax(t / temp, 1), log_target=True,
                      reduction="batchmean") * temp * temp
        ce = F.cross_entropy(s, y)
        loss = self.alpha * kl + (1 - self.alpha) * ce
        return loss, {"acc": accuracy(logits, y), "kl": kl.detach(), "ce": ce.detach(),
                      "teacher_acc": accuracy(t, y)}
