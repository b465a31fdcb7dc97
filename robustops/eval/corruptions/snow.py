"""snow: a zoomed, thresholded, motion-blurred noise layer added twice (and its
180-degree rotation), over a brightened copy of the image.

As the reference, per sample: N(loc, scale) noise of the image's size,
`clipped_zoom` by a large factor without the final crop, values below a
threshold set to 0, clipped to [0, 1], motion-blurred (radius, sigma per
severity) at an angle uniform in [-135, -45) degrees on that uncropped layer
(its edges are where the blur repeats pixels and where the taps stop), rounded
to 8 bits, cropped to the image's top-left H x W; the image becomes
blend * x + (1 - blend) * max(x, 1.5 * gray + 0.5) (gray = OpenCV's RGB2GRAY,
or the image itself for one channel), and the result is
clip(x + layer + rot180(layer)).
"""
from __future__ import annotations

import torch
from torch import Tensor

from .base import SampleRandom, register
from .motion_blur import motion_blur_batch, uniform_angle
from .zoom_blur import clipped_zoom

# (loc, scale, zoom, threshold, blur radius, blur sigma, blend)
PARAMS = ((0.1, 0.3, 3, 0.5, 10, 4, 0.8),
          (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
          (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
          (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
          (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55))

# OpenCV's COLOR_RGB2GRAY weights.
GRAY = (0.299, 0.587, 0.114)


def snow_layer(noise: Tensor, severity: int, angle: Tensor, height: int, width: int) -> Tensor:
    """(B, 1, H, W) snow layer in [0, 1] (8-bit levels) from standard-normal noise (B, H, W)
    and angles (B,) in degrees."""
    loc, scale, zoom, threshold, radius, sigma, _ = PARAMS[severity - 1]
    layer = (loc + scale * noise).unsqueeze(1)
    layer = clipped_zoom(layer, zoom, crop=False)
    layer = torch.where(layer < threshold, torch.zeros_like(layer), layer).clamp_(0, 1)
    layer = motion_blur_batch(layer, radius, sigma, angle)
    layer = torch.round(layer * 255) / 255
    return layer[:, :, :height, :width]


def snow_from_draws(x: Tensor, severity: int, noise: Tensor, angle: Tensor) -> Tensor:
    """snow on x (B, C, H, W) with given draws: noise (B, H, W) standard normal, angle (B,) degrees."""
    blend = PARAMS[severity - 1][6]
    h, w = x.shape[-2:]
    layer = snow_layer(noise.to(x.dtype), severity, angle, h, w)
    if x.shape[1] == 3:
        gray = (GRAY[0] * x[:, 0] + GRAY[1] * x[:, 1] + GRAY[2] * x[:, 2]).unsqueeze(1)
    else:
        gray = x
    x = blend * x + (1 - blend) * torch.maximum(x, gray * 1.5 + 0.5)
    return (x + layer + layer.flip(-2, -1)).clamp_(0, 1)


def snow_draws(rng: SampleRandom, height: int, width: int):
    """The random inputs of snow: (noise (B, H, W) standard normal, angle (B,) float64 degrees)."""
    noise = rng.normal(height, width)
    angle = uniform_angle(rng, -135.0, -45.0)
    return noise, angle


@register("snow")
def snow(x: Tensor, severity: int, rng: SampleRandom) -> Tensor:
    """x: (B, C, H, W) float32 in [0, 1] -> snowy copy."""
    noise, angle = snow_draws(rng, x.shape[-2], x.shape[-1])
    return snow_from_draws(x, severity, noise.to(x.device), angle)


__all__ = ["snow", "snow_from_draws", "snow_draws", "snow_layer"]
