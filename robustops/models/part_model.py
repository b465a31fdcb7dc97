"""PartModel: a part segmenter followed by a classifier head, trained end to end.

    model = PartModel(SmallPartSegmenter(num_parts=6), WeightedBBoxHead(6, 5))
    logits = model(x)                                  # (B, num_classes): attacks see this
    logits, part_logits = model(x, return_parts=True)  # + (B, K+1, H, W) for the seg loss

``build_part_model`` builds one by names (METHODS.md section 1: segmenter -> part logits
-> head).
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

from torch import Tensor, nn

from .part_heads import HEAD_NAMES, PartHead, build_part_head
from .part_segmenters import (SEGMENTER_NAMES, PartSegmenter, build_part_segmenter,
                              check_float_images)

__all__ = ["PartModel", "build_part_model"]


class PartModel(nn.Module):
    """segmenter (x -> part logits) + head (part logits -> class logits).

    The segmenter must follow the PartSegmenter interface (``forward(x,
    return_features=False)``; num_parts); the head the PartHead interface. Their
    numbers of parts must agree.

    Shapes: x (B, 3, H, W) in [0, 1] -> logits (B, num_classes); with return_parts=True
    -> (logits, part_logits (B, K+1, H, W)).
    """

    def __init__(self, segmenter: nn.Module, head: PartHead):
        super().__init__()
        k_seg = getattr(segmenter, "num_parts", None)
        k_head = getattr(head, "num_parts", None)
        if k_seg is None or k_head is None:
            raise ValueError("PartModel needs a segmenter and a head with num_parts "
                             "(robustops.models.part_segmenters / part_heads)")
        if k_seg != k_head:
            raise ValueError(f"the segmenter predicts {k_seg} parts but the head expects "
                             f"{k_head}")
        self.segmenter = segmenter
        self.head = head
        self.num_parts = k_seg
        self.num_classes = head.num_classes

    def forward(self, x: Tensor, return_parts: bool = False
                ) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        """x (B, 3, H, W) in [0, 1] -> class logits [, part logits (B, K+1, H, W)]."""
        check_float_images(x, "PartModel")
        if self.head.needs_features:
            part_logits, features = self.segmenter(x, return_features=True)
        else:
            part_logits, features = self.segmenter(x), None
        logits = self.head(part_logits, features)
        return (logits, part_logits) if return_parts else logits


def build_part_model(num_parts: int, num_classes: int, *, head: str = "weighted_bbox",
                     segmenter: str = "small", class_part_matrix: Optional[Tensor] = None,
                     segmenter_kwargs: Optional[dict] = None,
                     head_kwargs: Optional[dict] = None) -> PartModel:
    """A PartModel by names: segmenter in SEGMENTER_NAMES ('small', 'deeplabv3_resnet50'),
    head in HEAD_NAMES; pixel_count needs class_part_matrix (num_classes, num_parts + 1)."""
    if segmenter not in SEGMENTER_NAMES:
        raise ValueError(f"unknown segmenter {segmenter!r}; choose one of "
                         f"{', '.join(SEGMENTER_NAMES)}")
    if head not in HEAD_NAMES:
        raise ValueError(f"unknown part head {head!r}; choose one of {', '.join(HEAD_NAMES)}")
    seg: PartSegmenter = build_part_segmenter(segmenter, num_parts, **(segmenter_kwargs or {}))
    h = build_part_head(head, num_parts, num_classes, feature_channels=seg.feature_channels,
                        class_part_matrix=class_part_matrix, **(head_kwargs or {}))
    return PartModel(seg, h)
