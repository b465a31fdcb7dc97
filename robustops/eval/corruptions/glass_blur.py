"""glass_blur: Gaussian blur, 8-bit truncation, local pixel shuffling, Gaussian blur.

The reference (sigma, max_delta d, iterations per severity):

    x = uint8(gaussian(x, sigma) * 255)                  # truncation
    repeat iterations times:
        for h = H-d .. d+1 (descending), w = W-d .. d+1 (descending):
            dx, dy = randint(-d, d, size=2)              # in [-d, d - 1]
            x[h, w], x[h+dy, w+dx] = x[h+dy, w+dx], x[h, w]
    return clip(gaussian(x / 255, sigma))

For an (H, W, 3) array the "swap" line is not a swap: numpy evaluates the
right-hand side as two *views*, assigns x[h, w] = x[h+dy, w+dx], and then
copies the already-overwritten x[h, w] back onto x[h+dy, w+dx], a no-op. So
each visited pixel p *pulls* the current value of its target t = p + o_p.

Batched equivalent (exact, not merely the same statistics). At the moment p
is visited, t holds its original value unless t was itself visited earlier,
i.e. t is an interior (visited) position later in raster order than p; then it
holds t's own final value. So the final value of p is the original value at
the end of the chain p -> t -> t' -> ... that follows "visited earlier" links;
the chain's raster position increases strictly, so it ends, and pointer
jumping (ceil(log2(H W)) rounds of next = next[next], each one gather over the
batch) finds every chain's end at once. One sweep is then a single gather of
the image; the sweeps (iterations) are repeated. Given the same offsets, this
reproduces the reference's loop exactly (the tests feed it our offsets).

Grayscale: the reference's 2-D path differs (true swaps of scalars, and a
first blur along one axis only, as its channel axis is -1); a 1-channel image
here gets exactly what each channel of an RGB image gets.

The 8-bit truncation floors 255 y, so it is decided by the last bits of y
wherever y is (near) an 8-bit level. Next to flat areas Gaussian tails give
values like 254.9995 that float32 cannot tell from 255, so the first blur runs
in float64 like the reference's (float32 with a 1e-4-level margin on MPS,
which has no float64); then ours and the reference's truncations agree except
where the exact value *is* a level (inside flat areas), where either float64
sum may land a hair below it depending on sigma and summation order (the
reference turns flat 255 into 254 at sigma 1.1 but not at 1.5): there the two
can be one 8-bit level apart before the second blur (tested).

Random offsets: one (dy, dx) pair per pixel and sweep, uniform on [-d, d - 1]^2
(one counter-RNG uniform each, split in two), keyed per sample; only interior
pixels use theirs. The blurs are gaussian_blur's (scikit-image's gaussian as
depthwise convolutions).
"""
from __future__ import annotations

import math
from typing import Tuple

import torch
from torch import Tensor

from .base import SampleRandom, register
from .gaussian_blur import gaussian_blur_dw

# (sigma, max_delta, iterations)
PARAMS = ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2))


def glass_offsets(rng: SampleRandom, iterations: int, height: int, width: int,
                  max_delta: int) -> Tuple[Tensor, Tensor]:
    """(dy, dx), each (B, iterations, H, W) int64 uniform on [-d, d - 1] (randint(-d, d))."""
    n = 2 * max_delta
    # One 24-bit uniform per pixel and sweep picks the pair among n * n <= 64.
    u = rng.uniform(iterations, height, width)
    k = torch.floor(u * (n * n)).clamp_(0, n * n - 1).to(torch.int64)
    return k // n - max_delta, k % n - max_delta


def shuffle_sources(dy: Tensor, dx: Tensor, max_delta: int) -> Tensor:
    """(B, H*W) flat source index of every pixel after one reference sweep with offsets
    dy, dx (B, H, W) (used at interior pixels only)."""
    b, h, w = dy.shape
    d = max_delta
    dev = dy.device
    hh = torch.arange(h, device=dev).view(1, h, 1)
    ww = torch.arange(w, device=dev).view(1, 1, w)
    interior = (hh >= d + 1) & (hh <= h - d) & (ww >= d + 1) & (ww <= w - d)   # (1, H, W)
    key = (hh * w + ww).expand(b, h, w)                                        # raster position
    th = (hh + dy).clamp_(0, h - 1)
    tw = (ww + dx).clamp_(0, w - 1)
    target = torch.where(interior, th * w + tw, key).reshape(b, h * w)
    key = key.reshape(b, h * w)
    inside = interior.reshape(1, h * w).expand(b, h * w)
    # p takes t's final value when t was visited before p (interior, later in raster order).
    chained = inside & inside.gather(1, target) & (target > key)
    nxt = torch.where(chained, target, key)
    for _ in range(max(1, math.ceil(math.log2(h * w)))):
        nxt = nxt.gather(1, nxt)
    return target.gather(1, nxt)


def glass_shuffle(x: Tensor, dy: Tensor, dx: Tensor, max_delta: int) -> Tensor:
    """The reference's pixel-shuffle loop on x (B, C, H, W) with offsets (B, iterations, H, W)."""
    b, c, h, w = x.shape
    flat = x.reshape(b, c, h * w)
    for it in range(dy.shape[1]):
        src = shuffle_sources(dy[:, it], dx[:, it], max_delta)
        flat = flat.gather(2, src.unsqueeze(1).expand(b, c, h * w))
    return flat.reshape(b, c, h, w)


def _wide(x: Tensor) -> Tensor:
    # float64 where the device has it (MPS has not): the truncation below is
    # decided by the last bits, and the reference's blur is float64.
    return x if x.device.type == "mps" else x.double()


def truncate_to_uint8(y: Tensor) -> Tensor:
    """np.uint8(y * 255) / 255 for y in [0, 1]: truncation to the 8-bit level below.
    In float32 (MPS only) a 1e-4-level margin absorbs the rounding of the blur."""
    eps = 0.0 if y.dtype == torch.float64 else 1e-4
    return torch.floor(y * 255 + eps).clamp_(0, 255) / 255


def glass_blur_from_offsets(x: Tensor, severity: int, dy: Tensor, dx: Tensor) -> Tensor:
    """glass_blur of x (B, C, H, W) with the given offsets (B, iterations, H, W)."""
    sigma, max_delta, _ = PARAMS[severity - 1]
    y = truncate_to_uint8(gaussian_blur_dw(_wide(x), sigma)).to(x.dtype)
    y = glass_shuffle(y, dy, dx, max_delta)
    return gaussian_blur_dw(y, sigma).clamp_(0, 1)


@register("glass_blur")
def glass_blur(x: Tensor, severity: int, rng: SampleRandom) -> Tensor:
    """x: (B, C, H, W) float32 in [0, 1] -> glass-blurred copy."""
    _, max_delta, iterations = PARAMS[severity - 1]
    dy, dx = glass_offsets(rng, iterations, x.shape[-2], x.shape[-1], max_delta)
    return glass_blur_from_offsets(x, severity, dy.to(x.device), dx.to(x.device))


__all__ = ["glass_blur", "glass_blur_from_offsets", "glass_offsets", "glass_shuffle",
           "shuffle_sources"]
