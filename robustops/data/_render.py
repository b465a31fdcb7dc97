"""Shared pieces of the generated datasets (``shapes``, ``parts``): seeds, checks, 2-D drawing.

Everything here is vectorised over a batch of images: per-image parameters are (m,)
tensors, pixel coordinates are (m, H, W) tensors, and a signed distance is negative
inside a primitive. Coordinates follow the maths convention: x to the right, y up,
both in [-1, 1] across the image (pixel centres), so canonical shapes point "up".
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

# The integer hash of robustops::counter_rng's reference, applied here to the
# dataset's own keys (plain tensor ops: no custom-op set-up when generating data).
from ..arguments import positive_int, require_int
from ..ops.counter_rng import fmix32, mul32

_MASK64 = (1 << 64) - 1

# Dataset tags keyed into every seed so shapes and parts never share random numbers.
TAG_SHAPES = 0x5348
TAG_PARTS = 0x5054

SPLITS = ("train", "val", "test")


# ----------------------------------------------------------------------------- seeds / checks


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def derive_seed(*keys: int) -> int:
    """A 64-bit seed that is a fixed function of the integer keys (same on every machine).

    Python's hash() of a string is salted per process, so splits and streams are
    keyed by their index, never by hashing their names.
    """
    h = 0x6A09E667F3BCC909
    for k in keys:
        h = _splitmix64(h ^ (int(k) & _MASK64))
    return h


def generator(*keys: int) -> torch.Generator:
    """A CPU torch.Generator seeded by derive_seed(*keys)."""
    return torch.Generator().manual_seed(derive_seed(*keys))


def check_int(name: str, value, minimum: int) -> int:
    """value if it is an int (not a bool) >= minimum: TypeError / ValueError otherwise."""
    return positive_int(value, name, minimum)


def check_seed(seed) -> int:
    """seed if it is an int (not a bool), else a TypeError."""
    return require_int(seed, "seed")


def check_choice(name: str, value, choices: tuple[str, ...]) -> int:
    """Raise ValueError naming the valid values unless value is one of them; return its index."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return choices.index(value)


# ----------------------------------------------------------------------------- sampling


def uniform(gen: torch.Generator, n: int, low: float, high: float) -> Tensor:
    """(n,) float32 uniform in [low, high) drawn from gen."""
    return torch.rand(n, generator=gen).mul_(high - low).add_(low)


def balanced_labels(gen: torch.Generator, n: int, classes: int) -> Tensor:
    """(n,) int64 labels in 0..classes-1, each class n // classes or that + 1 times, shuffled."""
    return (torch.arange(n) % classes)[torch.randperm(n, generator=gen)]


def rank_within_class(labels: Tensor) -> Tensor:
    """(n,) int64: for each sample, how many earlier samples (by index) share its label."""
    n = labels.numel()
    order = torch.sort(labels, stable=True).indices
    counts = torch.bincount(labels)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty(n, dtype=torch.int64)
    rank[order] = torch.arange(n) - starts.repeat_interleave(counts)
    return rank


def hsv_to_rgb(h: Tensor, s: Tensor, v: Tensor) -> Tensor:
    """(..., 3) RGB in [0, 1] from same-shaped hue (any real, taken mod 1), saturation, value."""
    h = torch.remainder(h, 1.0)
    k = torch.tensor([5.0, 3.0, 1.0], dtype=h.dtype)
    kk = torch.remainder(k + h[..., None] * 6.0, 6.0)
    return v[..., None] - (v * s)[..., None] * torch.clamp(torch.minimum(kk, 4.0 - kk), 0.0, 1.0)


# ----------------------------------------------------------------------------- geometry


def pixel_grid(size: int) -> tuple[Tensor, Tensor]:
    """(1, H, W) x and y of the pixel centres in [-1, 1]: x to the right, y up."""
    c = (torch.arange(size, dtype=torch.float32) + 0.5) * (2.0 / size) - 1.0
    return c.view(1, 1, size), (-c).view(1, size, 1)


def to_local(x: Tensor, y: Tensor, cx: Tensor, cy: Tensor, angle: Tensor, scale: Tensor,
             flip: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Coordinates in a frame centred at (cx, cy), rotated by angle (radians, anticlockwise),
    scaled by scale (frame units -> image units) and, where flip is true, mirrored in x.

    x, y: broadcastable to (m, H, W); cx, cy, angle, scale, flip: (m,). Returns (m, H, W) each.
    """
    cx, cy, scale = cx.view(-1, 1, 1), cy.view(-1, 1, 1), scale.view(-1, 1, 1)
    c, s = torch.cos(angle).view(-1, 1, 1), torch.sin(angle).view(-1, 1, 1)
    dx, dy = x - cx, y - cy
    u = (c * dx + s * dy) / scale
    v = (-s * dx + c * dy) / scale
    if flip is not None:
        u = torch.where(flip.view(-1, 1, 1), -u, u)
    return u, v


def sd_circle(x: Tensor, y: Tensor, r) -> Tensor:
    return torch.sqrt(x * x + y * y) - r


def sd_box(x: Tensor, y: Tensor, hx, hy, radius=0.0) -> Tensor:
    """Box with half-sizes (hx, hy), corners rounded by radius (the box keeps its extent)."""
    qx = x.abs() - hx + radius
    qy = y.abs() - hy + radius
    outside = torch.sqrt(qx.clamp(min=0) ** 2 + qy.clamp(min=0) ** 2)
    return outside + torch.maximum(qx, qy).clamp(max=0) - radius


def sd_ellipse(x: Tensor, y: Tensor, rx, ry) -> Tensor:
    """Approximate signed distance to an axis-aligned ellipse (exact sign, good near the edge)."""
    k0 = torch.sqrt((x / rx) ** 2 + (y / ry) ** 2)
    k1 = torch.sqrt((x / (rx * rx)) ** 2 + (y / (ry * ry)) ** 2)
    return k0 * (k0 - 1.0) / k1.clamp(min=1e-6)


def sd_triangle(x: Tensor, y: Tensor, p0, p1, p2) -> Tensor:
    """Exact signed distance to the triangle with vertices p0, p1, p2 ((x, y) pairs of floats
    or tensors broadcastable to x)."""
    (x0, y0), (x1, y1), (x2, y2) = p0, p1, p2
    ex, ey = (x1 - x0, x2 - x1, x0 - x2), (y1 - y0, y2 - y1, y0 - y2)
    vx, vy = (x - x0, x - x1, x - x2), (y - y0, y - y1, y - y2)
    sgn = math.copysign(1.0, ex[0] * ey[2] - ey[0] * ex[2]) if isinstance(x0, float) else \
        torch.sign(ex[0] * ey[2] - ey[0] * ex[2])
    dist2 = side = None
    for i in range(3):
        t = ((vx[i] * ex[i] + vy[i] * ey[i]) / (ex[i] * ex[i] + ey[i] * ey[i])).clamp(0.0, 1.0)
        qx, qy = vx[i] - ex[i] * t, vy[i] - ey[i] * t
        d2 = qx * qx + qy * qy
        sd = sgn * (vx[i] * ey[i] - vy[i] * ex[i])
        dist2 = d2 if dist2 is None else torch.minimum(dist2, d2)
        side = sd if side is None else torch.minimum(side, sd)
    return -torch.sqrt(dist2) * torch.sign(side)


def sd_star(x: Tensor, y: Tensor, r: float, n: int, m: float) -> Tensor:
    """Signed distance to an n-pointed star of outer radius r, one point up; m in [2, n]
    sets how deep the notches are (m = 2: regular polygon)."""
    an, en = math.pi / n, math.pi / m
    acx, acy = math.cos(an), math.sin(an)
    ecx, ecy = math.cos(en), math.sin(en)
    bn = torch.remainder(torch.atan2(x, y), 2.0 * an) - an
    rad = torch.sqrt(x * x + y * y)
    px, py = rad * torch.cos(bn) - r * acx, rad * torch.sin(bn).abs() - r * acy
    t = (-(px * ecx + py * ecy)).clamp(0.0, r * acy / ecy)
    px, py = px + ecx * t, py + ecy * t
    return torch.sqrt(px * px + py * py) * torch.sign(px)


def sd_heart(x: Tensor, y: Tensor) -> Tensor:
    """Signed distance to a heart with its tip at (0, 0) and lobes up to y ~ 1.1, |x| < ~0.6."""
    x = x.abs()
    lobe = torch.sqrt((x - 0.25) ** 2 + (y - 0.75) ** 2) - math.sqrt(2.0) / 4.0
    w = (x + y).clamp(min=0.0) * 0.5
    body = torch.sqrt(torch.minimum(x * x + (y - 1.0) ** 2, (x - w) ** 2 + (y - w) ** 2)) \
        * torch.sign(x - y)
    return torch.where(x + y > 1.0, lobe, body)


def coverage(sd: Tensor, pixels_per_unit: Tensor | float) -> Tensor:
    """Anti-aliased coverage in [0, 1] from a signed distance in image units: 1 deep inside,
    0 outside, a one-pixel linear ramp across the edge (0.5 exactly on it)."""
    if isinstance(pixels_per_unit, Tensor):
        pixels_per_unit = pixels_per_unit.view(-1, 1, 1)
    return (0.5 - sd * pixels_per_unit).clamp_(0.0, 1.0)


def hashed_uniform(keys: tuple[int, ...], index: Tensor, numel: int) -> Tensor:
    """(m, numel) float32 uniforms in (0, 1); row b is a pure function of (keys, index[b]),
    so an image's numbers do not depend on which chunk (or which other images) it is drawn
    with. A small integer hash, independent of the torch RNG: index (m,) int64 >= 0."""
    key = derive_seed(*keys)
    k_lo, k_hi = key & 0xFFFFFFFF, key >> 32
    row = fmix32((index & 0xFFFFFFFF) ^ k_lo)
    row = fmix32(row ^ ((index >> 32) & 0xFFFFFFFF) ^ fmix32(torch.tensor(k_hi)))
    col = fmix32(mul32(torch.arange(numel, dtype=torch.int64), 0x9E3779B9) ^ 0x1B873593)
    h = fmix32(mul32(row[:, None] ^ col[None, :], 0xCC9E2D51) ^ (row[:, None] >> 7))
    # 24 random bits, centred in their bucket: never exactly 0 or 1.
    return ((h >> 8).to(torch.float32) + 0.5) * (2.0 ** -24)


def smooth_noise(keys: tuple[int, ...], index: Tensor, size: int, cells: int) -> Tensor:
    """(m, size, size) value noise in [0, 1]: a (cells x cells) grid of uniforms per image
    (hashed_uniform of (keys, global image index)), bicubically upsampled."""
    grid = hashed_uniform(keys, index, cells * cells).view(-1, 1, cells, cells)
    up = torch.nn.functional.interpolate(grid, size=(size, size), mode="bicubic",
                                         align_corners=False)
    return up[:, 0].clamp_(0.0, 1.0)


def pixel_noise(keys: tuple[int, ...], index: Tensor, size: int) -> Tensor:
    """(m, size, size) per-pixel uniforms in (0, 1) (hashed_uniform of (keys, image index))."""
    return hashed_uniform(keys, index, size * size).view(-1, size, size)


def chunks(n: int, image_size: int, pixels: int = 1 << 22):
    """Consecutive (start, stop) ranges over n images, each about `pixels` pixels at most, so
    rendering memory stays bounded for large sets; results never depend on the chunking."""
    step = max(1, pixels // (image_size * image_size))
    for start in range(0, n, step):
        yield start, min(n, start + step)
