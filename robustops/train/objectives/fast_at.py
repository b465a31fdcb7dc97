"""Fast AT (Wong et al., 2020): FGSM from a uniform random start, step 1.25 * eps."""
from __future__ import annotations

from .pgd_at import PGDAT


class FastAT(PGDAT):
    """One attack step of size alpha (default 1.25 * eps) from a random start."""

    name = "fast_at"

    def __init__(self, eps: float = 8 / 255, alpha=None, norm: str = "linf", seed: int = 0,
                 attack_mode: str = "train"):
        super().__init__(eps=eps, alpha=1.25 * eps if alpha is None else alpha, steps=1,
                         norm=norm, random_start=True, attack_mode=attack_mode, seed=seed)
