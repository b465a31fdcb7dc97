"""Classifier heads of part-based models: part logits -> class logits (METHODS.md section 1).

Every head maps part logits M (B, K+1, H, W) (channel 0 = background) and, for the
two-head model only, the segmenter's features, to class logits (B, num_classes):

    logits = head(part_logits, features=None)

- ``DownsampledHead``: S = softmax(M) without the background, adaptive-avg-pooled to
  s x s (s = 4), conv(K -> 5K, kernel s) -> BN -> ReLU -> Linear(5K -> 50) -> BN -> ReLU
  -> Linear(50 -> classes).
- ``BBoxHead``: per channel mass, centroid and spread (robustops.part_moments) of the
  background and the K parts, (B, K+1, 5), as the original's bbox model (its default; its
  "nobg" experiments drop the background: ``background=False``, (B, K, 5)) -> BN1d(5C)
  -> Linear(5C -> 50) -> ReLU -> BN1d(50) -> Linear(50 -> classes), C = K+1 or K.
- ``WeightedBBoxHead`` (the paper's default): the K parts only (the original's weighted
  model always drops the background), with the mass replaced by the foreground-weighted
  class score (part_moments(weighted=True)).
- ``TwoHead``: ignores the part logits; global-average-pooled segmenter features ->
  Linear (a classification head next to the segmentation head).
- ``PixelCountHead``: a fixed part -> class matrix P (classes, K+1); class logit maps
  sum_k P[c, k] M_k / sum_k P[c, k]; logits = their mean over pixels. No parameters.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from ..arguments import positive_int, require_bool
from ..ops.part_moments import part_moments

__all__ = ["PartHead", "DownsampledHead", "BBoxHead", "WeightedBBoxHead", "TwoHead",
           "PixelCountHead", "build_part_head", "HEAD_NAMES"]

HIDDEN = 50  # the hidden width of the paper's heads


class PartHead(nn.Module):
    """Base of the heads: num_parts K, num_classes, and whether the head needs the
    segmenter's features (PartModel asks the segmenter for them only then)."""

    needs_features = False

    def __init__(self, num_parts: int, num_classes: int):
        super().__init__()
        self.num_parts = positive_int(num_parts, "num_parts")
        self.num_classes = positive_int(num_classes, "num_classes")

    def _check(self, part_logits: Tensor) -> None:
        k1 = self.num_parts + 1
        if not isinstance(part_logits, Tensor) or part_logits.ndim != 4 \
                or part_logits.shape[1] != k1:
            shape = tuple(part_logits.shape) if isinstance(part_logits, Tensor) else \
                type(part_logits).__name__
            raise ValueError(f"{type(self).__name__} expects part logits (B, {k1}, H, W) "
                             f"(num_parts + 1 channels), got {shape}")

    def forward(self, part_logits: Tensor, features: Optional[Tensor] = None) -> Tensor:
        raise NotImplementedError


class DownsampledHead(PartHead):
    """Softmax part masks, pooled to s x s, through a small conv + MLP.

    part_logits (B, K+1, H, W) -> (B, num_classes); H, W >= 1 (adaptive pooling).
    """

    def __init__(self, num_parts: int, num_classes: int, pool_size: int = 4):
        super().__init__(num_parts, num_classes)
        s = positive_int(pool_size, "pool_size")
        k = num_parts
        self.pool = nn.AdaptiveAvgPool2d(s)
        self.net = nn.Sequential(
            nn.Conv2d(k, 5 * k, s), nn.BatchNorm2d(5 * k), nn.ReLU(inplace=True), nn.Flatten(),
            nn.Linear(5 * k, HIDDEN), nn.BatchNorm1d(HIDDEN), nn.ReLU(inplace=True),
            nn.Linear(HIDDEN, num_classes))

    def forward(self, part_logits: Tensor, features: Optional[Tensor] = None) -> Tensor:
        self._check(part_logits)
        s = torch.softmax(part_logits, 1)[:, 1:]
        return self.net(self.pool(s))


class BBoxHead(PartHead):
    """Per-channel [mass, c_x, c_y, sigma_x, sigma_y] (fused part_moments) through an MLP.

    background=True (the default, as the original bbox model unless its experiment name
    has "nobg", and as its scripts run it): the background channel's features come first,
    then the K parts': (B, K+1, 5) features, BN1d(5(K+1)). background=False: the K parts
    only, (B, K, 5), BN1d(5K). The background's features are those of S_0 = softmax(M)_0,
    computed by the same fused op (a constant channel at the dtype's lowest value goes in
    front as the op's "background": its softmax is exactly 0, so every other channel's S
    is unchanged and the op returns the features of channels 0..K).

    Features of a part that is absent (S_k = 0 everywhere): [0, -1, -1, 2e-3 / W,
    2e-3 / H] (see robustops.ops.part_moments, "Absent parts"): in range and finite,
    where the original's are NaN (bbox model, no guard) or far out of range (weighted
    model: centre ~ W - 1 before normalising, i.e. 30 at W = 32).

    part_logits (B, K+1, H, W) -> (B, num_classes). ``features(part_logits)`` returns the
    part features themselves.
    """

    weighted = False

    def __init__(self, num_parts: int, num_classes: int, background: bool = True):
        super().__init__(num_parts, num_classes)
        self.background = require_bool(background, "background")
        d = 5 * (num_parts + int(background))
        self.net = nn.Sequential(
            nn.Flatten(), nn.BatchNorm1d(d), nn.Linear(d, HIDDEN), nn.ReLU(inplace=True),
            nn.BatchNorm1d(HIDDEN), nn.Linear(HIDDEN, num_classes))

    def extra_repr(self) -> str:
        return f"background={self.background}"

    def features(self, part_logits: Tensor) -> Tensor:
        """(B, K+1, H, W) -> (B, K+1, 5) with the background first (background=True) or
        (B, K, 5) (robustops.ops.part_moments)."""
        self._check(part_logits)
        if self.background:
            # A channel whose softmax is exactly 0 stands in as the op's background.
            pad = part_logits.new_full((part_logits.shape[0], 1, *part_logits.shape[2:]),
                                       torch.finfo(part_logits.dtype).min)
            return part_moments(torch.cat([pad, part_logits], 1), weighted=False)
        return part_moments(part_logits, weighted=self.weighted)

    def forward(self, part_logits: Tensor, features: Optional[Tensor] = None) -> Tensor:
        return self.net(self.features(part_logits))


class WeightedBBoxHead(BBoxHead):
    """BBoxHead on the K parts (never the background, as the original's weighted model)
    with the foreground-weighted class score as each part's first feature: (B, K, 5)."""

    weighted = True

    def __init__(self, num_parts: int, num_classes: int):
        super().__init__(num_parts, num_classes, background=False)


class TwoHead(PartHead):
    """A classification head on the segmenter's features (the two-head model).

    features (B, F, h, w) -> global average pool -> Linear(F -> num_classes); the part
    logits are only checked (they feed the segmentation loss, not the class logits).
    """

    needs_features = True

    def __init__(self, num_parts: int, num_classes: int, feature_channels: int):
        super().__init__(num_parts, num_classes)
        self.feature_channels = positive_int(feature_channels, "feature_channels")
        self.fc = nn.Linear(feature_channels, num_classes)

    def forward(self, part_logits: Tensor, features: Optional[Tensor] = None) -> Tensor:
        self._check(part_logits)
        if features is None or features.ndim != 4 or features.shape[1] != self.feature_channels:
            got = None if features is None else tuple(features.shape)
            raise ValueError(f"TwoHead needs the segmenter's features (B, "
                             f"{self.feature_channels}, h, w), got {got}")
        return self.fc(features.mean((2, 3)))


class PixelCountHead(PartHead):
    """Fixed part -> class map: logits = mean over pixels of the class logit maps.

    class_part_matrix: (num_classes, K+1) bool or 0/1 (column 0, the background, is
    ignored): [c, k] marks part k as belonging to class c, e.g.
    ``PartsDataset.class_part_matrix()``. Each class map averages its parts' logits (so
    classes built from more parts do not win by count). No learnable parameters.
    """

    def __init__(self, class_part_matrix: Tensor):
        if not isinstance(class_part_matrix, Tensor) or class_part_matrix.ndim != 2 \
                or class_part_matrix.shape[1] < 2:
            raise ValueError("class_part_matrix must be a (num_classes, K+1) tensor with "
                             "K >= 1")
        p = class_part_matrix.detach().to(torch.float32).clone()
        p[:, 0] = 0.0  # the background belongs to no class
        if bool((p.sum(1) == 0).any()):
            c = int((p.sum(1) == 0).nonzero()[0, 0])
            raise ValueError(f"class_part_matrix: class {c} has no part (every class needs at "
                             "least one part column k >= 1 set)")
        super().__init__(p.shape[1] - 1, p.shape[0])
        self.register_buffer("weight", p / p.sum(1, keepdim=True))

    def forward(self, part_logits: Tensor, features: Optional[Tensor] = None) -> Tensor:
        self._check(part_logits)
        # mean_hw sum_k W[c, k] M_k = sum_k W[c, k] mean_hw M_k: pool first (K+1 values per
        # image instead of a (B, classes, H, W) map).
        return part_logits.mean((2, 3)) @ self.weight.to(part_logits.dtype).t()


HEAD_NAMES = ("downsampled", "bbox", "weighted_bbox", "two_head", "pixel_count")


def build_part_head(name: str, num_parts: int, num_classes: int, *,
                    feature_channels: Optional[int] = None,
                    class_part_matrix: Optional[Tensor] = None, **kwargs) -> PartHead:
    """A head by name (HEAD_NAMES). two_head needs feature_channels; pixel_count needs
    class_part_matrix (num_classes, num_parts + 1); kwargs go to downsampled
    (pool_size) and bbox (background)."""
    if name == "downsampled":
        return DownsampledHead(num_parts, num_classes, **kwargs)
    if name == "bbox":
        return BBoxHead(num_parts, num_classes, **kwargs)
    if name == "weighted_bbox":
        return WeightedBBoxHead(num_parts, num_classes)
    if name == "two_head":
        if feature_channels is None:
            raise ValueError("two_head needs feature_channels (the segmenter's)")
        return TwoHead(num_parts, num_classes, feature_channels)
    if name == "pixel_count":
        if class_part_matrix is None:
            raise ValueError("pixel_count needs class_part_matrix (num_classes, num_parts + 1)")
        if tuple(class_part_matrix.shape) != (num_classes, num_parts + 1):
            raise ValueError(f"class_part_matrix must be ({num_classes}, {num_parts + 1}), got "
                             f"{tuple(class_part_matrix.shape)}")
        return PixelCountHead(class_part_matrix)
    raise ValueError(f"unknown part head {name!r}; choose one of {', '.join(HEAD_NAMES)}")
