"""Separable Gaussian filtering of image batches, as scikit-image's `filters.gaussian`.

Same kernel (scipy's: truncate * sigma radius, normalised samples of the
Gaussian) and the same border rule (mode 'nearest': edge pixels repeat), applied
per channel with two 1-D convolutions, so the corruptions that blur match the
reference and run batched on any device.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def gaussian_kernel_1d(sigma: float, truncate: float = 4.0, device=None,
                       dtype=torch.float32) -> Tensor:
    """(2r + 1,) normalised Gaussian samples, r = int(truncate * sigma + 0.5)."""
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    radius = int(truncate * float(sigma) + 0.5)
    t = torch.arange(-radius, radius + 1, device=device, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return (k / k.sum()).to(dtype)


def gaussian_filter(x: Tensor, sigma: float, truncate: float = 4.0, mode: str = "replicate") -> Tensor:
    """Blur x (B, C, H, W) with a Gaussian of std `sigma` pixels along H and W.

    mode: F.pad mode for the borders ('replicate' = scikit-image's 'nearest',
    'reflect' = scipy's 'mirror'). Returns the same shape and dtype.
    """
    k = gaussian_kernel_1d(sigma, truncate, x.device, x.dtype)
    r = k.numel() // 2
    b, c, h, w = x.shape
    y = x.reshape(b * c, 1, h, w)
    # Padding wider than the image is not allowed by F.pad's reflect; replicate
    # has no such limit, and a wider kernel only sees repeated edges anyway.
    y = F.pad(y, (r, r, 0, 0), mode=mode if r < w else "replicate")
    y = F.conv2d(y, k.view(1, 1, 1, -1))
    y = F.pad(y, (0, 0, r, r), mode=mode if r < h else "replicate")
    y = F.conv2d(y, k.view(1, 1, -1, 1))
    return y.reshape(b, c, h, w)
