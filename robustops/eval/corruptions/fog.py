"""fog: a plasma fractal (diamond-square) haze added to the image, then the contrast rescaled.

As the reference: the fractal is built on a square map whose side is the next
power of two >= the image's larger side (wrap-around neighbours, wibble 100
divided by `wibbledecay` each octave, noise `wibble * U(-wibble, wibble)`),
scaled to [0, 1], cropped to the image's top-left corner and shared by all
channels; then x <- clip((x + c * fractal) * max(x) / (max(x) + c)), with max(x)
taken per image. The diamond-square runs batched: one (B, N, N) map, a loop
over the log2(N) octaves, with the three noise draws of each octave (squares,
then the two diamond sets, in the reference's order) taken from the per-sample
counter RNG.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .base import SampleRandom, register

# (fractal strength c, wibble decay) per severity.
FOG = ((1.5, 2.0), (2.0, 2.0), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4))


def next_power_of_2(n: int) -> int:
    return 1 if n == 0 else 2 ** (n - 1).bit_length()


def plasma_fractal(rng: SampleRandom, mapsize: int, wibbledecay: float, device=None) -> Tensor:
    """(B, mapsize, mapsize) float32 diamond-square heightmaps scaled to [0, 1].

    mapsize must be a power of two. Draws 3 uniform (n, n) fields per octave
    (n = mapsize // step), in the order squares, row diamonds, column diamonds.
    """
    if mapsize < 1 or mapsize & (mapsize - 1):
        raise ValueError(f"mapsize must be a power of two, got {mapsize}")
    b = rng.batch
    m = torch.zeros(b, mapsize, mapsize, device=device, dtype=torch.float32)
    step = mapsize
    wibble = 100.0

    def wibbled_mean(total: Tensor) -> Tensor:
        n = total.shape[-1]
        u = rng.uniform(n, n).to(device)
        # wibble * np.random.uniform(-wibble, wibble)
        return (u * (2 * wibble) - wibble).mul_(wibble).add_(total, alpha=0.25)

    while step >= 2:
        half = step // 2
        # squares: centre of each square of corners `step` apart
        corner = m[:, 0::step, 0::step]
        acc = corner + corner.roll(-1, 1)
        acc = acc + acc.roll(-1, 2)
        m[:, half::step, half::step] = wibbled_mean(acc)
        # diamonds: the edge midpoints, from the two centres and two corners around them
        dr = m[:, half::step, half::step]
        ul = m[:, 0::step, 0::step]
        m[:, 0::step, half::step] = wibbled_mean((dr + dr.roll(1, 1)) + (ul + ul.roll(-1, 2)))
        m[:, half::step, 0::step] = wibbled_mean((dr + dr.roll(1, 2)) + (ul + ul.roll(-1, 1)))
        step //= 2
        wibble /= wibbledecay
    m -= m.amin(dim=(1, 2), keepdim=True)
    return m.div_(m.amax(dim=(1, 2), keepdim=True))


def fog_blend(x: Tensor, fractal: Tensor, severity: int) -> Tensor:
    """The deterministic part: x (B, C, H, W), fractal (B, >=H, >=W) in [0, 1]."""
    c = FOG[severity - 1][0]
    h, w = x.shape[-2:]
    f = fractal[:, None, :h, :w].to(x)
    max_val = x.amax(dim=(1, 2, 3), keepdim=True)
    return torch.add(x, f, alpha=c).mul_(max_val / (max_val + c)).clamp_(0, 1)


@register("fog")
def fog(x: Tensor, severity: int, rng: SampleRandom) -> Tensor:
    """x: (B, C, H, W) float32 in [0, 1] -> fogged batch, same shape."""
    mapsize = next_power_of_2(max(x.shape[-2:]))
    fractal = plasma_fractal(rng, mapsize, FOG[severity - 1][1], device=x.device)
    return fog_blend(x, fractal, severity)
