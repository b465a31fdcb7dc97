"""brightness: raise HSV value by a constant per severity (grayscale: add it)."""
from __future__ import annotations

from torch import Tensor

from .base import SampleRandom, register
from .hsv import hsv_to_rgb, rgb_to_hsv

SHIFT = (0.1, 0.2, 0.3, 0.4, 0.5)


@register("brightness")
def brightness(x: Tensor, severity: int, rng: SampleRandom) -> Tensor:
    """x: (B, C, H, W) float32 in [0, 1] -> HSV value + c, clipped (RGB); x + c, clipped (C = 1)."""
    c = SHIFT[severity - 1]
    if x.shape[1] == 1:
        return (x + c).clamp_(0, 1)
    hsv = rgb_to_hsv(x)
    hsv[:, 2].add_(c).clamp_(0, 1)
    return hsv_to_rgb(hsv).clamp_(0, 1)
