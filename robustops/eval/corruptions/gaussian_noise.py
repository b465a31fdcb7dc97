"""gaussian_noise: additive white Gaussian noise, sigma per severity (0-1 scale)."""
from __future__ import annotations

from torch import Tensor

from .base import SampleRandom, register

SIGMA = (0.08, 0.12, 0.18, 0.26, 0.38)


@register("gaussian_noise")
def gaussian_noise(x: Tensor, severity: int, rng: SampleRandom) -> Tensor:
    """x: (B, C, H, W) float32 in [0, 1] -> x + N(0, sigma^2), clipped to [0, 1]."""
    noise = rng.normal(*x.shape[1:]).to(x.device)
    return (x + SIGMA[severity - 1] * noise).clamp_(0, 1)
