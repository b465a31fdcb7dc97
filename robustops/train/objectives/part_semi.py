"""Semi-supervised part-model training (clean stage): (1 - c) CE + c Seg, c = 0.5."""
from __future__ import annotations

import torch

from .base import Objective, accuracy
from .part_loss import (SEG_WEIGHT, forward_with_parts, segmentation_loss,
                        semi_supervised_part_loss, unpack_part_targets)


def check_seg_weight(c) -> float:
    if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 <= c <= 1:
        raise ValueError(f"seg_weight (c) must be a number in [0, 1], got {c!r}")
    return float(c)


def mask_metrics(masks) -> dict:
    """The fraction of the batch that has a mask (for the logs)."""
    if masks is None:
        return {"has_mask": torch.zeros(())}
    return {"has_mask": (masks != -1).flatten(1).any(1).float().mean()}


class PartSemiSupervised(Objective):
    """The clean part-model loss of METHODS.md section 1 (robustops.train.objectives.part_loss).

    The model must be a PartModel (forward(x, return_parts=True) -> (class logits, part
    logits)); y is packed (B, 1 + H*W) targets (pack_part_targets, e.g. from
    PartSegmentationDataset(..., packed=True)) or plain labels (B,) (no masks).
    """

    name = "part_semi"

    def __init__(self, seg_weight: float = SEG_WEIGHT):
        self.seg_weight = check_seg_weight(seg_weight)

    def compute(self, model, x, y, *, replay=0):
        labels, masks = unpack_part_targets(y, x.shape[-2:])
        logits, parts = forward_with_parts(model, x)
        loss = semi_supervised_part_loss(logits, parts, labels, masks, self.seg_weight)
        metrics = {"acc": accuracy(logits, labels), **mask_metrics(masks)}
        if masks is not None:
            metrics["seg"] = segmentation_loss(parts.detach(), masks).mean()
        return loss, metrics
