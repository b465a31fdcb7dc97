"""gaussian_blur: isotropic Gaussian blur, sigma per severity (pixels).

As the reference: scikit-image's `filters.gaussian` (scipy's kernel, truncate
4, edges repeated: mode 'nearest') per channel, clipped to [0, 1]. The
reference blurs a 2-D (grayscale) array along its rows only (its channel axis
is -1, the image's width); here a grayscale image is blurred in both
directions, as each channel of an RGB one.

Speed and batch invariance: the same kernel and borders as `gaussian_filter`
(bit for bit), but all B * C maps are the channels of one image blurred by a
depthwise (grouped) convolution, tens of times faster on CPU than a batch of
single-channel maps. Each map is computed on its own, in the same order,
whatever the batch (BLAS matrix products were faster still but their last bits
depend on the batch's size and memory alignment).
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .base import SampleRandom, register
from .gaussian_filter import gaussian_kernel_1d

SIGMA = (1, 2, 3, 4, 6)


def gaussian_blur_dw(x: Tensor, sigma: float, truncate: float = 4.0) -> Tensor:
    """gaussian_filter(x, sigma) (scipy kernel, edges repeated) for x (B, C, H, W) in any
    float dtype, as two depthwise convolutions over the B * C maps."""
    b, c, h, w = x.shape
    n = b * c
    y = x.reshape(1, n, h, w)
    if n == 1:
        # groups=1 would take the ordinary convolution's code path, whose last
        # bits differ from the depthwise one's: keep one sample's result the
        # same alone as in a batch by blurring a copy alongside.
        return gaussian_blur_dw(y.expand(1, 2, h, w), sigma, truncate)[:, :1].reshape(b, c, h, w)
    k = gaussian_kernel_1d(sigma, truncate, x.device, x.dtype)
    m = k.numel()
    r = m // 2
    y = F.pad(y, (r, r, 0, 0), mode="replicate")
    y = F.conv2d(y, k.view(1, 1, 1, m).expand(n, 1, 1, m).contiguous(), groups=n)
    y = F.pad(y, (0, 0, r, r), mode="replicate")
    y = F.conv2d(y, k.view(1, 1, m, 1).expand(n, 1, m, 1).contiguous(), groups=n)
    return y.reshape(b, c, h, w)


@register("gaussian_blur")
def gaussian_blur(x: Tensor, severity: int, rng: SampleRandom) -> Tensor:
    """x: (B, C, H, W) float32 in [0, 1] -> Gaussian-blurred copy (deterministic; rng unused)."""
    return gaussian_blur_dw(x, float(SIGMA[severity - 1])).clamp_(0, 1)


__all__ = ["gaussian_blur_dw", "gaussian_blur"]
