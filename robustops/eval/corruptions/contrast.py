"""contrast: shrink each channel towards its image mean by a factor per severity."""
from __future__ import annotations

from torch import Tensor

from .base import SampleRandom, register

FACTOR = (0.4, 0.3, 0.2, 0.1, 0.05)


@register("contrast")
def contrast(x: Tensor, severity: int, rng: SampleRandom) -> Tensor:
    """x: (B, C, H, W) float32 in [0, 1] -> (x - mean) * c + mean, mean per image and channel."""
    c = FACTOR[severity - 1]
    mean = x.mean(dim=(2, 3), keepdim=True)
    return ((x - mean) * c + mean).clamp_(0, 1)
