"""zoom_blur: average of the image and centre zooms of it, zoom factors per severity.

As the reference: `clipped_zoom(x, z)` takes the centre crop of ceil(n / z)
pixels per axis (offset (n - ceil(n / z)) // 2) and resizes it by
scipy.ndimage.zoom(order=1) with its default grid_mode=False: the output has
round(ceil(n / z) * z) samples and output index j reads input coordinate
j * (in - 1) / (out - 1) by linear interpolation; the first n rows/columns are
kept (top-left, as the reference slices). The result is
(x + sum_z clipped_zoom(x, z)) / (len(zooms) + 1), clipped. Each axis is
resampled by two index_selects and a weighted sum, so the cost is linear in pixels.

`clipped_zoom` is shared with snow (which keeps the uncropped zoom).
"""
from __future__ import annotations

import functools
import math
from typing import Tuple

import torch
from torch import Tensor

from .base import SampleRandom, register


def np_arange(start: float, stop: float, step: float) -> Tuple[float, ...]:
    """numpy.arange(start, stop, step) for floats, value for value: length
    ceil((stop - start) / step), values start + i * ((start + step) - start)."""
    n = max(0, math.ceil((stop - start) / step))
    delta = (start + step) - start
    return tuple(start if i == 0 else start + i * delta for i in range(n))


ZOOMS = (np_arange(1, 1.11, 0.01),
         np_arange(1, 1.16, 0.01),
         np_arange(1, 1.21, 0.02),
         np_arange(1, 1.26, 0.02),
         np_arange(1, 1.31, 0.03))


@functools.lru_cache(maxsize=None)
def _zoom_axis_cpu(n: int, zoom: float, crop: bool) -> Tuple[Tensor, Tensor, Tensor]:
    ch = int(math.ceil(n / float(zoom)))
    top = (n - ch) // 2
    out = int(round(ch * zoom))              # scipy's output length
    scale = (ch - 1) / (out - 1) if out > 1 else 1.0   # grid_mode=False
    length = min(out, n) if crop else out
    coord = torch.arange(length, dtype=torch.float64) * scale
    i0 = torch.floor(coord).clamp_(0, ch - 1)
    frac = coord - i0
    i0 = i0.to(torch.int64)
    i1 = (i0 + 1).clamp_(max=ch - 1)
    return i0 + top, i1 + top, frac


def _zoom_dim(x: Tensor, dim: int, zoom: float, crop: bool) -> Tensor:
    i0, i1, frac = _zoom_axis_cpu(x.shape[dim], float(zoom), crop)
    shape = [1] * x.ndim
    shape[dim] = -1
    f = frac.to(device=x.device, dtype=x.dtype).view(shape)
    g = (1 - frac).to(device=x.device, dtype=x.dtype).view(shape)
    # (1 - t) a + t b in separate elementwise ops: each correctly rounded, so a
    # sample's result does not depend on the batch (torch.lerp's vector and
    # scalar code paths may round differently).
    a = x.index_select(dim, i0.to(x.device)).mul_(g)
    return a.add_(x.index_select(dim, i1.to(x.device)).mul_(f))


def clipped_zoom(x: Tensor, zoom: float, crop: bool = True) -> Tensor:
    """The reference's clipped_zoom on x (B, C, H, W): centre crop, scipy order-1 zoom.
    crop=True keeps the first H x W samples (as zoom_blur does); crop=False returns
    the whole round(ceil(H / z) * z) x round(ceil(W / z) * z) zoom (as snow uses)."""
    if zoom == 1:
        return x.clone()
    return _zoom_dim(_zoom_dim(x, 2, zoom, crop), 3, zoom, crop)


@register("zoom_blur")
def zoom_blur(x: Tensor, severity: int, rng: SampleRandom) -> Tensor:
    """x: (B, C, H, W) float32 in [0, 1] -> zoom-blurred copy (deterministic; rng unused)."""
    zooms = ZOOMS[severity - 1]
    out = x.clone()
    for z in zooms:
        out.add_(x if z == 1 else clipped_zoom(x, z))
    return out.div_(len(zooms) + 1).clamp_(0, 1)


__all__ = ["clipped_zoom", "np_arange", "ZOOMS", "zoom_blur"]
