"""Semi-supervised part-model training (clean stage): (1 - c) CE + c Seg, c = 0.5."""
from __future__ import annotations

import torch

from ...arguments import require_real
from ...data.part_targets import unpack_part_targets
from .base import Objective, accuracy
from .part_loss import SEG_WEIGHT, forward_with_parts, segmentation_loss, semi_supervised_part_loss


def check_seg_weight(c) -> float:
    """float(c) for the part objectives' seg_weight c in [0, 1] (TypeError for a non-number)."""
    return require_real(c, "seg_weight (c)", low=0, high=1)


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
