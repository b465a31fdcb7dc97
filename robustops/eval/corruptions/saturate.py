"""saturate: scale and shift HSV saturation per severity."""
from __future__ import annotations

from torch import Tensor

from .base import SampleRandom, register
from .hsv import hsv_to_rgb, rgb_to_hsv

# (multiplier, offset) of the saturation channel.
SATURATION = ((0.3, 0.0), (0.1, 0.0), (2.0, 0.0), (5.0, 0.1), (20.0, 0.2))


@register("saturate")
def saturate(x: Tensor, severity: int, rng: SampleRandom) -> Tensor:
    """x: (B, C, H, W) float32 in [0, 1] -> S * a + b clipped to [0, 1], back to RGB.

    Grayscale goes through RGB as the reference does (three equal channels,
    keep the first): hue 0 puts V in the red channel, so gray images come back
    unchanged whatever the saturation.
    """
    a, b = SATURATION[severity - 1]
    gray = x.shape[1] == 1
    rgb = x.expand(-1, 3, -1, -1) if gray else x
    hsv = rgb_to_hsv(rgb)
    hsv[:, 1].mul_(a).add_(b).clamp_(0, 1)
    out = hsv_to_rgb(hsv).clamp_(0, 1)
    return out[:, :1].contiguous() if gray else out
