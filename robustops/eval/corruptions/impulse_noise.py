"""impulse_noise: salt-and-pepper noise on a fraction of the values per severity."""
from __future__ import annotations

import torch
from torch import Tensor

from .base import SampleRandom, register

AMOUNT = (0.03, 0.06, 0.09, 0.17, 0.27)


@register("impulse_noise")
def impulse_noise(x: Tensor, severity: int, rng: SampleRandom) -> Tensor:
    """x: (B, C, H, W) float32 in [0, 1] -> each value set to 0 or to 1 w.p. amount / 2 each.

    As scikit-image's random_noise(mode='s&p', amount=a, salt_vs_pepper=0.5):
    every element (each channel separately) is replaced with probability a,
    by salt (1) or pepper (0) with equal odds. One uniform per element: below
    a/2 pepper, in [a/2, a) salt.
    """
    a = AMOUNT[severity - 1]
    u = rng.uniform(*x.shape[1:]).to(x.device)
    out = torch.where(u < a, (u >= a / 2).to(x.dtype), x)
    return out.clamp_(0, 1)
