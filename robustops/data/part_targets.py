"""The part-mask target convention shared by part datasets and part objectives.

Masks (the has-mask convention of every part dataset here): a part mask is (H, W)
int64 with 0 = background, 1..K = parts and -1 = unlabelled. An image WITHOUT a mask has
-1 everywhere (``NO_MASK``); -1 on some pixels only marks those pixels unlabelled.

The Trainer's batches are (x, y) pairs, so a part dataset hands it packed targets:
``pack_part_targets(y, mask)`` -> (B, 1 + H*W) int64 rows [y, mask.flatten()];
``unpack_part_targets`` is its inverse, used by the part objectives
(robustops.train.objectives.part_loss), which also accept plain (B,) labels (no masks:
classification only). It lives in ``data`` because the datasets produce the packing and
the objectives above them consume it.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

__all__ = ["NO_MASK", "pack_part_targets", "unpack_part_targets"]

NO_MASK = -1  # the mask value of unlabelled pixels (everywhere: an image without a mask)


def pack_part_targets(labels: Tensor, masks: Tensor) -> Tensor:
    """labels (B,) or () and masks (B, H, W) or (H, W) int -> (B, 1 + H*W) or (1 + H*W,)
    int64 rows [label, mask.flatten()]: the Trainer's y for part objectives."""
    if masks.ndim == 2:
        return torch.cat([labels.reshape(1).to(torch.int64), masks.reshape(-1).to(torch.int64)])
    if masks.ndim != 3 or labels.shape != masks.shape[:1]:
        raise ValueError(f"pack_part_targets: need labels (B,) and masks (B, H, W), got "
                         f"{tuple(labels.shape)} and {tuple(masks.shape)}")
    return torch.cat([labels.reshape(-1, 1).to(torch.int64),
                      masks.reshape(masks.shape[0], -1).to(torch.int64)], 1)


def unpack_part_targets(y: Tensor, size: Tuple[int, int]) -> Tuple[Tensor, Optional[Tensor]]:
    """y: (B,) labels -> (labels, None); (B, 1 + H*W) packed -> (labels, masks (B, H, W)).

    size: (H, W) of the images (the masks must have it)."""
    if y.ndim == 1:
        return y, None
    h, w = size
    if y.ndim != 2 or y.shape[1] != 1 + h * w:
        raise ValueError(f"part targets must be labels (B,) or packed (B, 1 + H*W) = "
                         f"(B, {1 + h * w}) for {h}x{w} images (pack_part_targets), got "
                         f"{tuple(y.shape)}")
    return y[:, 0], y[:, 1:].reshape(-1, h, w)
