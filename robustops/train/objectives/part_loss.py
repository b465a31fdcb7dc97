"""The semi-supervised part-model loss.

Masks follow the has-mask convention of robustops.data.part_targets: (H, W) int64, 0 =
background, 1..K = parts, -1 = unlabelled (``NO_MASK``; everywhere for an image without
a mask).

Per sample (METHODS.md section 1; the paper's SemiSumLoss):

    L_i = (1 - c) CE(z_i, y_i) + c * Seg_i,   Seg_i = mean over labelled pixels of CE(M_i, mask_i)

with Seg_i = 0 for an image without a mask, so it contributes only its classification
term; the loss is the batch mean of L_i (c = 0.5).

The Trainer's batches are (x, y) pairs, so a part dataset hands it packed targets
(robustops.data.part_targets.pack_part_targets: (B, 1 + H*W) rows [y, mask.flatten()]);
the part objectives accept either such packed targets or plain (B,) labels (no masks:
classification only).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch.nn.functional as F
from torch import Tensor, nn

from ...data.part_targets import NO_MASK

__all__ = ["segmentation_loss", "semi_supervised_part_loss", "forward_with_parts"]

SEG_WEIGHT = 0.5  # c


def segmentation_loss(part_logits: Tensor, masks: Tensor) -> Tensor:
    """Per-sample mean pixel CE over labelled pixels: (B, K+1, H, W), (B, H, W) -> (B,).

    Pixels with mask -1 are ignored; an image with no labelled pixel gets 0 (and no
    gradient). Mask values must lie in -1..K."""
    if masks.shape != part_logits.shape[:1] + part_logits.shape[2:]:
        raise ValueError(f"masks {tuple(masks.shape)} must be (B, H, W) like the part logits "
                         f"{tuple(part_logits.shape)}")
    if masks.numel():
        # One host sync per batch for a clear error instead of an opaque index assert.
        lo, hi = int(masks.min()), int(masks.max())
        if lo < NO_MASK or hi > part_logits.shape[1] - 1:
            raise ValueError(f"mask values must lie in -1..{part_logits.shape[1] - 1} (-1 "
                             f"unlabelled, 0 background, 1..K parts), got {lo}..{hi}")
    pix = F.cross_entropy(part_logits.float(), masks, ignore_index=NO_MASK, reduction="none")
    labelled = (masks != NO_MASK).flatten(1).sum(1)
    return pix.flatten(1).sum(1) / labelled.clamp_min(1)


def semi_supervised_part_loss(class_logits: Tensor, part_logits: Tensor, labels: Tensor,
                              masks: Optional[Tensor], c: float = SEG_WEIGHT,
                              seg_logits: Optional[Tensor] = None) -> Tensor:
    """Batch mean of (1 - c) CE(z, y) + c Seg (Seg from seg_logits if given, else part_logits).

    masks None (or all -1) -> classification term only. Returns a scalar."""
    loss = (1 - c) * F.cross_entropy(class_logits.float(), labels, reduction="none")
    if masks is not None and c > 0:
        loss = loss + c * segmentation_loss(part_logits if seg_logits is None else seg_logits,
                                            masks)
    return loss.mean()


def forward_with_parts(model: nn.Module, x: Tensor) -> Tuple[Tensor, Tensor]:
    """model(x, return_parts=True) with a clear error for models without part logits."""
    try:
        out = model(x, return_parts=True)
    except TypeError as exc:
        if "return_parts" not in str(exc):
            raise
        raise TypeError(f"part objectives need a model whose forward accepts return_parts=True "
                        f"and returns (class logits, part logits), e.g. "
                        f"robustops.models.PartModel; got {type(model).__name__}") from None
    if not isinstance(out, tuple) or len(out) != 2:
        raise TypeError("model(x, return_parts=True) must return (class logits, part logits)")
    return out
