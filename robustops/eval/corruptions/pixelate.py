"""pixelate: PIL BOX downscale by a factor per severity, then PIL NEAREST upscale back.

Both resamplings reproduce Pillow's 8-bit arithmetic (libImaging/Resample.c and
the affine NEAREST scaler of Geometry.c), so results equal PIL's exactly:

* BOX: output pixel i averages the input pixels whose centres fall in
  (centre - scale/2, centre + scale/2], centre = (i + 0.5) * scale, scale =
  in/out; weights 1/n as 22-bit fixed point; two passes, each rounded and
  clipped to uint8. The horizontal pass goes first unless the height loses
  more than twice as many pixels as the width (the order Pillow 13 picks,
  python-pillow/Pillow#9549; older Pillow always went horizontal first, and
  the intermediate rounding makes the order visible).
* NEAREST: output pixel i takes input pixel floor(x_i) with x_i = (i + 0.5) *
  in/out accumulated as Pillow does (x_0 = scale/2, x_{i+1} = x_i + scale, in
  doubles); at exact integer positions this can differ from the closed form.

The windows, weights and index vectors depend only on the sizes: built once
per size (cached), the windows with float64 tensor ops that repeat Pillow's
double arithmetic, the nearest indices by the same running sum as Pillow.
"""
from __future__ import annotations

import functools
import itertools

import torch
from torch import Tensor

from .base import SampleRandom, register

FACTOR = (0.6, 0.5, 0.4, 0.3, 0.25)
_PRECISION_BITS = 32 - 8 - 2          # Pillow's fixed-point precision for 8-bit images


@functools.lru_cache(maxsize=256)
def box_weights(in_size: int, out_size: int, device=None) -> tuple:
    """Pillow's BOX filter from in_size to out_size samples.

    Returns (members, fixed): members (out_size, in_size) float32, 1 where an
    input sample is in an output's window; fixed (out_size,) int32, the 22-bit
    fixed-point weight Pillow gives each member (1 / n rounded, n = window size).
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 0.5 * filterscale
    f64 = dict(dtype=torch.float64, device=device)
    centre = (torch.arange(out_size, **f64) + 0.5) * scale                  # (out,)
    xmin = torch.trunc(centre - support + 0.5).clamp(min=0)
    xmax = torch.trunc(centre + support + 0.5).clamp(max=in_size)
    pos = torch.arange(in_size, **f64)
    arg = ((pos[None, :] - centre[:, None]) + 0.5) * (1.0 / filterscale)
    inside = (arg > -0.5) & (arg <= 0.5) & (pos >= xmin[:, None]) & (pos < xmax[:, None])
    weight = 1.0 / inside.sum(dim=1).to(torch.float64)
    fixed = torch.trunc(weight * (1 << _PRECISION_BITS) + 0.5).to(torch.int32)
    return inside.to(torch.float32), fixed


@functools.lru_cache(maxsize=256)
def _nearest_positions(in_size: int, out_size: int) -> tuple:
    # Pillow's ImagingScaleAffine: xo = scale * 0.5, then xo += scale per pixel;
    # a per-size constant (one entry per output column), not per-image work.
    scale = in_size / out_size
    steps = itertools.accumulate(itertools.repeat(scale, out_size - 1), initial=scale * 0.5)
    return tuple(min(int(v), in_size - 1) for v in steps)


def nearest_index(in_size: int, out_size: int, device=None) -> Tensor:
    """(out_size,) int64 source index of each output pixel for Pillow's NEAREST resize."""
    return torch.tensor(_nearest_positions(in_size, out_size), dtype=torch.int64, device=device)


def _descale(sums: Tensor, fixed: Tensor) -> Tensor:
    """Pillow's 8-bit accumulation: (sum * weight + 2^21) >> 22, clipped to 0..255."""
    acc = sums.to(torch.int32) * fixed + (1 << (_PRECISION_BITS - 1))
    return (acc >> _PRECISION_BITS).clamp_(0, 255).to(sums.dtype)


def box_resize(img: Tensor, out_h: int, out_w: int) -> Tensor:
    """(B, C, H, W) float32 holding uint8 values -> BOX-resized (B, C, out_h, out_w), as Pillow.

    Window sums of integers are exact in float32 (matrix products with 0/1
    members); the fixed-point weighting is then done in int32.
    """
    h, w = img.shape[-2:]

    def horizontal(t: Tensor) -> Tensor:
        if out_w == w:
            return t
        members, fixed = box_weights(w, out_w, t.device)
        return _descale(t @ members.t(), fixed)

    def vertical(t: Tensor) -> Tensor:
        if out_h == h:
            return t
        members, fixed = box_weights(h, out_h, t.device)
        return _descale(members @ t, fixed[:, None])

    if h - out_h > 2 * (w - out_w):
        return horizontal(vertical(img))
    return vertical(horizontal(img))


@register("pixelate")
def pixelate(x: Tensor, severity: int, rng: SampleRandom) -> Tensor:
    """x: (B, C, H, W) float32 in [0, 1] -> 8-bit, BOX to int(W*c) x int(H*c), NEAREST back."""
    c = FACTOR[severity - 1]
    h, w = x.shape[-2:]
    small_h, small_w = int(h * c), int(w * c)
    img = torch.round(x.clamp(0, 1) * 255)
    small = box_resize(img, small_h, small_w)
    rows = nearest_index(small_h, h, x.device)
    cols = nearest_index(small_w, w, x.device)
    out = small.index_select(-2, rows).index_select(-1, cols)
    return out / 255
