"""shot_noise: photon noise, Poisson(x * c) / c with c photons at full scale per severity."""
from __future__ import annotations

from torch import Tensor

from .base import SampleRandom, register
from .poisson import poisson_inverse_8bit

PHOTONS = (60, 25, 12, 5, 3)


@register("shot_noise")
def shot_noise(x: Tensor, severity: int, rng: SampleRandom) -> Tensor:
    """x: (B, C, H, W) float32 in [0, 1] -> Poisson(x * c) / c, clipped to [0, 1].

    Exact Poisson counts by inversion of one counter uniform per element
    (see poisson.py; images on the 8-bit grid take a table-driven fast path),
    so a sample's noise does not depend on its batch.
    """
    c = PHOTONS[severity - 1]
    u = rng.uniform(*x.shape[1:]).to(x.device)
    counts = poisson_inverse_8bit(x, c, u)
    return (counts / c).to(x.dtype).clamp_(0, 1)
