"""defocus_blur: convolution with an anti-aliased disk, radius per severity.

As the reference: the kernel is `disk(radius, alias_blur)` (a normalised
binary disk on a 17x17 grid, or (2r+1)^2 for r > 8, smoothed by OpenCV's
GaussianBlur with a 3x3, resp. 5x5, kernel and BORDER_REFLECT_101 at the
grid's edge, which is why the r = 8 and r = 10 kernels sum to slightly more
than 1), applied per channel like cv2.filter2D: correlation with the image
extended by BORDER_REFLECT_101 (gfedcb|abcdefgh|gfedcba), then clipped.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import SampleRandom, register

# (disk radius, anti-aliasing sigma)
PARAMS = ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5))


def reflect101_index(n: int, before: int, after: int, device=None) -> Tensor:
    """Source indices (before + n + after,) of an axis of length n extended by
    OpenCV's BORDER_REFLECT_101, for any pad width (reflects repeatedly)."""
    p = torch.arange(-before, n + after, device=device, dtype=torch.int64)
    if n == 1:
        return torch.zeros_like(p)
    period = 2 * (n - 1)
    p = torch.remainder(p, period)
    return torch.where(p >= n, period - p, p)


def pad_reflect101(x: Tensor, pad_h: int, pad_w: int) -> Tensor:
    """x (..., H, W) padded by pad_h rows and pad_w columns on each side, BORDER_REFLECT_101."""
    h, w = x.shape[-2:]
    x = x.index_select(-2, reflect101_index(h, pad_h, pad_h, x.device))
    return x.index_select(-1, reflect101_index(w, pad_w, pad_w, x.device))


def cv2_gaussian_kernel(ksize: int, sigma: float) -> Tensor:
    """cv2.getGaussianKernel(ksize, sigma) for sigma > 0: (ksize,) float64, normalised."""
    t = torch.arange(ksize, dtype=torch.float64) - (ksize - 1) / 2
    k = torch.exp(-(t * t) / (2 * sigma * sigma))
    return k / k.sum()


@functools.lru_cache(maxsize=None)
def _disk_cpu(radius: int, alias_blur: float) -> Tensor:
    if radius <= 8:
        half, ksize = 8, 3
    else:
        half, ksize = radius, 5
    L = torch.arange(-half, half + 1, dtype=torch.float64)
    aliased = ((L[:, None] ** 2 + L[None, :] ** 2) <= radius ** 2).to(torch.float64)
    aliased /= aliased.sum()
    # cv2.GaussianBlur: separable, BORDER_REFLECT_101 at the edge of the grid.
    g = cv2_gaussian_kernel(ksize, alias_blur)
    r = ksize // 2
    y = pad_reflect101(aliased[None, None], r, r)
    y = F.conv2d(y, g.view(1, 1, 1, -1))
    y = F.conv2d(y, g.view(1, 1, -1, 1))
    # OpenCV computes this kernel in float32 (the reference's dtype).
    return y[0, 0].to(torch.float32)


def disk(radius: int, alias_blur: float = 0.1, device=None, dtype=torch.float32) -> Tensor:
    """The reference's anti-aliased disk kernel, (17, 17) for radius <= 8 else (2r+1, 2r+1)."""
    return _disk_cpu(int(radius), float(alias_blur)).to(device=device, dtype=dtype)


def filter2d_reflect101(x: Tensor, kernel: Tensor) -> Tensor:
    """cv2.filter2D(x, -1, kernel) per channel: correlation, anchor at the centre,
    BORDER_REFLECT_101. x (B, C, H, W); kernel (kh, kw) with odd sides."""
    b, c, h, w = x.shape
    n = b * c
    kh, kw = kernel.shape
    if n == 1:
        # groups=1 would take the ordinary convolution's code path, whose last
        # bits differ from the depthwise one's: filter a copy alongside so one
        # sample gives the same result alone as in a batch.
        return filter2d_reflect101(x.expand(1, 2, h, w), kernel)[:, :1].reshape(b, c, h, w)
    # All maps as the channels of one image and a depthwise conv: on CPU many
    # times faster than a batch of single-channel maps, and each map computed
    # the same way whatever the batch.
    y = pad_reflect101(x.reshape(1, n, h, w), kh // 2, kw // 2)
    weight = kernel.to(x.dtype).view(1, 1, kh, kw).expand(n, 1, kh, kw).contiguous()
    y = F.conv2d(y, weight, groups=n)
    return y.reshape(b, c, h, w)


@register("defocus_blur")
def defocus_blur(x: Tensor, severity: int, rng: SampleRandom) -> Tensor:
    """x: (B, C, H, W) float32 in [0, 1] -> disk-blurred copy (deterministic; rng unused)."""
    radius, alias_blur = PARAMS[severity - 1]
    kernel = disk(radius, alias_blur, device=x.device, dtype=x.dtype)
    return filter2d_reflect101(x, kernel).clamp_(0, 1)


__all__ = ["disk", "filter2d_reflect101", "pad_reflect101", "reflect101_index", "defocus_blur"]
