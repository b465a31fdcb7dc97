"""Shared pieces of the batched corruptions: names, severities, seeded per-sample randomness.

Every corruption is a function `fn(x, severity, rng) -> Tensor` in its own file:
x: (B, C, H, W) float32 in [0, 1] (C = 3, or 1 for grayscale), on any device;
returns the corrupted batch, same shape, float32 in [0, 1]. Severity constants
are those of the reference definitions (Hendrycks & Dietterich's ImageNet-C code
as packaged by `imagecorruptions`), which are stated for 0-255 images.
"""
from __future__ import annotations

import zlib
from typing import Callable, Dict

import torch
from torch import Tensor

from ...counter_rng import counter_normal, counter_uniform

SEVERITIES = (1, 2, 3, 4, 5)
# The 15 ImageNet-C corruptions, in the benchmark's customary order, then the 4 extra ones.
STANDARD = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur",
            "motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness", "contrast",
            "elastic_transform", "pixelate", "jpeg_compression")
EXTRA = ("speckle_noise", "gaussian_blur", "spatter", "saturate")

CorruptionFn = Callable[[Tensor, int, "SampleRandom"], Tensor]


class SampleRandom:
    """Random numbers for one corruption call, keyed by (seed, corruption, severity,
    global sample index, element): a sample's corruption is the same whatever the
    batch it is in, the device, or the number of processes.

    Each draw advances an internal stream counter, so successive draws in one
    corruption are independent and the sequence is reproducible.
    """

    def __init__(self, seed: int, name: str, severity: int, index: Tensor):
        self.seed = (int(seed) * 1_000_003 + zlib.crc32(name.encode()) * 7 + severity) & (2**62 - 1)
        self.index = index
        self._stream = 0

    @property
    def batch(self) -> int:
        return self.index.shape[0]

    def _next(self) -> int:
        self._stream += 1
        return self._stream

    def uniform(self, *shape: int) -> Tensor:
        """(B, *shape) float32 uniform in the open interval (0, 1)."""
        n = 1
        for s in shape:
            n *= s
        return counter_uniform(self.seed, self._next(), self.index, n).reshape(self.batch, *shape)

    def normal(self, *shape: int) -> Tensor:
        """(B, *shape) float32 standard normal."""
        n = 1
        for s in shape:
            n *= s
        return counter_normal(self.seed, self._next(), self.index, n).reshape(self.batch, *shape)

    def per_sample_uniform(self) -> Tensor:
        """(B,) one uniform per sample (e.g. to pick a frost image or an offset)."""
        return self.uniform(1)[:, 0]


REGISTRY: Dict[str, CorruptionFn] = {}


def register(name: str):
    """Decorator adding a corruption function to the registry under `name`."""
    def deco(fn: CorruptionFn) -> CorruptionFn:
        if name in REGISTRY:
            raise ValueError(f"corruption {name!r} registered twice")
        REGISTRY[name] = fn
        return fn
    return deco


def to_uint8_grid(x: Tensor) -> Tensor:
    """Round [0, 1] values to the 256 levels of an 8-bit image (what the reference returns)."""
    return torch.round(x.clamp(0, 1) * 255) / 255
