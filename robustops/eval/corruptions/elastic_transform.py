"""elastic_transform: resampling along a smooth random displacement field.

As imagecorruptions 1.1.2 (which, unlike the original ImageNet-C code, has no
affine step): two fields U(-d, d) with d = 0.005 * H, each blurred by a
Gaussian of std (0.01 * H, 0.01 * W) (truncate 3, scipy's 'reflect' border:
half-sample symmetric) and scaled by alpha; the image is then sampled at
(row + dy, col + dx) with bilinear interpolation and 'reflect' borders
(scipy.ndimage.map_coordinates, order=1), all channels alike.

Here the blur is two batched matmuls with the border rule folded into
(n, n) matrices (see `separable_blur`), and the resampling is `grid_sample`
(bilinear, padding_mode='reflection', align_corners=False), whose reflection
about -0.5 and size - 0.5 followed by clamping is the same rule as scipy's
'reflect' for linear interpolation (they agree to float32 rounding, ~1e-6).
The matmuls are one per sample (bmm), so results do not depend on the batch.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import SampleRandom, register
from .gaussian_filter import gaussian_kernel_1d

ALPHA = (250 * 0.05, 250 * 0.065, 250 * 0.085, 250 * 0.1, 250 * 0.12)


def _border_index(i: Tensor, n: int, mode: str) -> Tensor:
    """Map indices beyond 0..n-1 back inside: 'reflect' (scipy: d c b a | a b c d) or 'nearest'."""
    if mode == "nearest":
        return i.clamp(0, n - 1)
    if mode == "reflect":
        i = i % (2 * n)
        return torch.where(i >= n, 2 * n - 1 - i, i)
    raise ValueError(f"mode must be 'reflect' or 'nearest', got {mode!r}")


@functools.lru_cache(maxsize=64)
def blur_matrix(n: int, sigma: float, truncate: float, mode: str, device: torch.device) -> Tensor:
    """(n, n) float32 A: A @ v = scipy.ndimage.gaussian_filter1d(v, sigma, mode=mode, truncate=truncate)."""
    k = gaussian_kernel_1d(sigma, truncate, dtype=torch.float64)
    r = k.numel() // 2
    rows = torch.arange(n).view(n, 1).expand(n, 2 * r + 1)
    cols = _border_index(rows + torch.arange(-r, r + 1).view(1, -1), n, mode)
    a = torch.zeros(n, n, dtype=torch.float64)
    a.index_put_((rows.reshape(-1), cols.reshape(-1)), k.repeat(n), accumulate=True)
    return a.to(device=device, dtype=torch.float32)


def separable_blur(f: Tensor, sigma: tuple, truncate: float = 4.0, mode: str = "reflect") -> Tensor:
    """Gaussian blur of f (B, H, W) float32 as scipy.ndimage.gaussian_filter(f_b, sigma, mode, truncate).

    sigma = (rows, columns). Done as A_rows @ f @ A_cols^T with the border rule
    folded into the (n, n) matrices, one batched matmul of identical shape per
    sample (torch.bmm), so a sample's result does not depend on the batch it is
    in (a batched conv2d may pick a different algorithm for another batch size).
    """
    b, h, w = f.shape
    a_cols = blur_matrix(w, float(sigma[1]), float(truncate), mode, f.device)
    a_rows = blur_matrix(h, float(sigma[0]), float(truncate), mode, f.device)
    y = torch.bmm(f, a_cols.t().expand(b, w, w))
    return torch.bmm(a_rows.expand(b, h, h), y)


def gaussian_reflect(f: Tensor, sigma: tuple, truncate: float = 3.0) -> Tensor:
    """Blur f (B, H, W) as scipy.ndimage.gaussian_filter(mode='reflect'), sigma = (s_rows, s_cols)."""
    return separable_blur(f, sigma, truncate, "reflect")


def displacement_fields(rng: SampleRandom, h: int, w: int, severity: int, device=None):
    """(dx, dy), each (B, H, W) float32 pixels: dx along columns, dy along rows."""
    alpha = ALPHA[severity - 1]
    sigma = (h * 0.01, w * 0.01)
    max_d = h * 0.005
    fields = []
    for _ in range(2):  # dx first, then dy, as the reference draws them
        u = rng.uniform(h, w).to(device)
        fields.append(gaussian_reflect(-max_d + (2 * max_d) * u, sigma) * alpha)
    return fields[0], fields[1]


def warp(x: Tensor, dx: Tensor, dy: Tensor) -> Tensor:
    """x (B, C, H, W) sampled at (row + dy, col + dx), bilinear, scipy-'reflect' borders."""
    b, c, h, w = x.shape
    rows = torch.arange(h, device=x.device, dtype=torch.float32).view(1, h, 1)
    cols = torch.arange(w, device=x.device, dtype=torch.float32).view(1, 1, w)
    # normalised coordinates (2 p + 1) / n - 1, written straight into the (B, H, W, 2) grid
    grid = torch.empty(b, h, w, 2, device=x.device, dtype=torch.float32)
    torch.add(cols * (2 / w) + (1 / w - 1), dx, alpha=2 / w, out=grid[..., 0])
    torch.add(rows * (2 / h) + (1 / h - 1), dy, alpha=2 / h, out=grid[..., 1])
    grid = grid.to(x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


@register("elastic_transform")
def elastic_transform(x: Tensor, severity: int, rng: SampleRandom) -> Tensor:
    """x: (B, C, H, W) float32 in [0, 1] -> elastically warped batch, same shape."""
    dx, dy = displacement_fields(rng, x.shape[-2], x.shape[-1], severity, x.device)
    return warp(x, dx, dy).clamp_(0, 1)
