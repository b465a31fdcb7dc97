"""motion_blur: one-sided Gaussian shift-and-add along a random angle per sample.

As the reference's `_motion_blur`: the kernel has width 2r + 1 taps with
weights exp(-i^2 / 2 sigma^2) (i = 0 .. 2r, normalised), tap i shifts the image
by (dy, dx) = (-ceil(i sin a - 1/2), -ceil(i cos a - 1/2)) pixels with the
edge rows/columns repeated, and the taps stop (without renormalising) at the
first one whose shift reaches the image's height or width. The angle is
uniform in [-45, 45) degrees, one per sample, so each sample has its own
kernel: the shifts are applied as one flat gather per tap over the batch.

`motion_blur_batch` is shared with snow.
"""
from __future__ import annotations

import math
from typing import Union

import torch
from torch import Tensor

from .base import SampleRandom, register

# (radius, sigma)
PARAMS = ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15))


def motion_kernel(radius: int, sigma: float) -> list:
    """The reference's weights: width 2r + 1, exp(-i^2 / (2 sigma^2)) normalised (Python floats)."""
    width = 2 * radius + 1
    k = [math.exp(-(i * i) / (2 * sigma * sigma)) / (math.sqrt(2 * math.pi) * sigma)
         for i in range(width)]
    z = sum(k)
    return [v / z for v in k]


def _calc_device(device: torch.device) -> torch.device:
    # The integer shifts come from float64 trigonometry (as the reference's);
    # MPS has no float64, so that tiny (B,) computation goes to the CPU there.
    return torch.device("cpu") if device.type == "mps" else device


def motion_blur_batch(x: Tensor, radius: int, sigma: float,
                      angle: Union[float, Tensor]) -> Tensor:
    """Shift-and-add motion blur of x (B, C, H, W) at `angle` degrees, a float or (B,) tensor
    (one angle per sample). Not clipped; same shape and dtype as x."""
    b, c, h, w = x.shape
    dev = _calc_device(x.device)
    angle = torch.as_tensor(angle, dtype=torch.float64).to(dev)
    angle = angle.expand(b) if angle.ndim == 0 else angle.reshape(b)
    width = 2 * radius + 1
    kernel = motion_kernel(radius, sigma)
    rad = torch.deg2rad(angle)
    py, px = width * torch.sin(rad), width * torch.cos(rad)
    hyp = torch.hypot(py, px)
    rows = torch.arange(h, device=x.device, dtype=torch.int64)
    cols = torch.arange(w, device=x.device, dtype=torch.int64)
    flat = x.reshape(b, c, h * w)
    out = torch.zeros_like(flat)
    alive = torch.ones(b, dtype=torch.bool, device=dev)
    for i in range(width):
        dy = -torch.ceil(i * py / hyp - 0.5)
        dx = -torch.ceil(i * px / hyp - 0.5)
        # The reference breaks out of its loop at the first tap past the border.
        alive = alive & (dy.abs() < h) & (dx.abs() < w)
        dy = dy.to(device=x.device, dtype=torch.int64)
        dx = dx.to(device=x.device, dtype=torch.int64)
        weight = (alive.to(device=x.device, dtype=x.dtype) * kernel[i]).view(b, 1, 1)
        src_r = (rows[None, :] - dy[:, None]).clamp_(0, h - 1)          # (B, H)
        src_c = (cols[None, :] - dx[:, None]).clamp_(0, w - 1)          # (B, W)
        idx = (src_r[:, :, None] * w + src_c[:, None, :]).reshape(b, 1, h * w)
        out.add_(flat.gather(2, idx.expand(b, c, h * w)) * weight)
    return out.reshape(b, c, h, w)


def uniform_angle(rng: SampleRandom, low: float, high: float) -> Tensor:
    """(B,) float64 degrees, uniform in [low, high) like np.random.uniform(low, high)."""
    return low + (high - low) * rng.per_sample_uniform().to(torch.float64)


@register("motion_blur")
def motion_blur(x: Tensor, severity: int, rng: SampleRandom) -> Tensor:
    """x: (B, C, H, W) float32 in [0, 1] -> motion-blurred copy, angle uniform in [-45, 45) per sample."""
    radius, sigma = PARAMS[severity - 1]
    angle = uniform_angle(rng, -45.0, 45.0)
    return motion_blur_batch(x, radius, sigma, angle).clamp_(0, 1)


__all__ = ["motion_blur_batch", "motion_kernel", "uniform_angle", "motion_blur"]
