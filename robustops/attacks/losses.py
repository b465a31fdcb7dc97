"""Per-sample attack losses: cross-entropy, margin (C&W) and DLR (Croce & Hein 2020).

Every loss returns one value per sample, to be *ascended*: untargeted losses grow
as the true class loses; targeted ones grow as the target class wins. Summing
per-sample losses (instead of averaging) keeps each sample's gradient
independent of the batch it is in, which early exit and batch splitting rely on.
"""
from __future__ import annotations

from typing import Optional

import torch.nn.functional as F
from torch import Tensor

LOSSES = ("ce", "margin", "dlr")


def check_loss_name(name):
    """The loss name, validated (or a callable (logits, y, target) -> (B,) loss, kept)."""
    if callable(name):
        return name
    if name not in LOSSES:
        raise ValueError(f"unknown attack loss {name!r}; choose one of {', '.join(LOSSES)}")
    return name


def _other_max(logits: Tensor, cls: Tensor) -> Tensor:
    """max_{j != cls} logits[:, j]."""
    masked = logits.masked_fill(F.one_hot(cls, logits.shape[1]).bool(), float("-inf"))
    return masked.amax(dim=1)


def attack_loss(logits: Tensor, y: Tensor, kind="ce", target: Optional[Tensor] = None) -> Tensor:
    """Per-sample loss to ascend. logits: (B, K) float; y, target: (B,) int64. Returns (B,).

    kind: 'ce' | 'margin' | 'dlr', or a callable (logits, y, target) -> (B,)
    (e.g. TRADES' KL to the clean prediction).
    """
    if callable(kind):
        return kind(logits, y, target)
    logits = logits.float()  # autocast may hand back half logits; the loss wants float32
    if target is None:
        if kind == "ce":
            return F.cross_entropy(logits, y, reduction="none")
        z_y = logits.gather(1, y[:, None])[:, 0]
        if kind == "margin":
            return _other_max(logits, y) - z_y
        top = logits.topk(3, dim=1).values
        return -(z_y - _other_max(logits, y)) / (top[:, 0] - top[:, 2] + 1e-12)
    if kind == "ce":
        return -F.cross_entropy(logits, target, reduction="none")
    z_t = logits.gather(1, target[:, None])[:, 0]
    if kind == "margin":
        return z_t - _other_max(logits, target)
    z_y = logits.gather(1, y[:, None])[:, 0]
    top = logits.topk(4, dim=1).values
    return -(z_y - z_t) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)
