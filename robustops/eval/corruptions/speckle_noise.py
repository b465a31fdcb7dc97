"""speckle_noise: multiplicative Gaussian noise, x + x * N(0, c^2) per severity."""
from __future__ import annotations

from torch import Tensor

from .base import SampleRandom, register

SIGMA = (0.15, 0.2, 0.35, 0.45, 0.6)


@register("speckle_noise")
def speckle_noise(x: Tensor, severity: int, rng: SampleRandom) -> Tensor:
    """x: (B, C, H, W) float32 in [0, 1] -> x * (1 + sigma * N(0, 1)), clipped to [0, 1]."""
    noise = rng.normal(*x.shape[1:]).to(x.device)
    return (x + x * (SIGMA[severity - 1] * noise)).clamp_(0, 1)
