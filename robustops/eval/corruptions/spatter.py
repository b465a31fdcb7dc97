"""spatter: liquid (severities 1-3) or mud (4-5) splashes occluding the image.

As the reference: a layer N(c0, c1^2) per pixel (one per image, shared by the
channels; the normals are the inverse CDF of per-sample counter uniforms),
Gaussian-blurred (sigma c2, truncate 4, 'nearest' borders, as skimage), values
< c3 set to 0.

Liquid: the layer as uint8, its Canny edges (thresholds 50/150), the distance
to the nearest edge (cv2.distanceTransform, DIST_L2 with the 5x5 mask) capped
at 20, a 3x3 box blur truncated to uint8, histogram equalisation, the 3x3
emboss kernel [[-2,-1,0],[-1,1,1],[0,1,2]] (saturated to uint8) and another 3x3
box blur; m = layer * that, divided by its maximum, times c4, and
x + m * (175, 238, 238) / 255 per channel (the reference's BGR colour applied to
an RGB image, i.e. this order on R, G, B). Grayscale adds the luma of that colour.

Mud: m = Gaussian(sigma c4) of the mask layer > c3, values < 0.8 set to 0;
x * (1 - m) + m * (63, 42, 20) / 255 (luma of it for grayscale).

The OpenCV steps are re-implemented in torch, batched:
- Canny: 3x3 Sobel with replicated borders, L1 magnitude, OpenCV's integer
  tan(22.5 deg) sector test and its asymmetric (> / >=) non-maximum
  suppression, hysteresis by 8-connected growth (a separable 3x3
  binary dilation iterated to convergence). Identical to cv2.Canny on the inputs tested.
- distanceTransform: the same 5x5 chamfer metric (1, 1.4, 2.1969 in float32),
  capped at 20, computed exactly (in exact arithmetic) as 8 one-dimensional
  line transforms by doubling steps (see `chamfer_distance`); pixels outside
  the image are not edges. Equal to OpenCV's two-pass scan up to float32
  summation order (<= 4e-6 on tested inputs), which can rarely move a value
  across the uint8 truncation that follows.
- Gaussian blurs: matrices with the border rule folded in, applied by batched
  matmuls (`elastic_transform.separable_blur`), so results do not depend on
  the batch split.
- box blurs (BORDER_REFLECT_101), equalizeHist (OpenCV's LUT with float32
  scale and round-half-even) and filter2D (correlation, saturated): exact.
Differences from the reference: a blurred layer above 1.0 would wrap around in
the reference's uint8 cast; here it saturates at 255 (practically never
reached: the blurred layer's std is ~0.3 / (3.5 * c2)). A layer with no
nonzero m gives m = 0 here (the reference divides 0 by 0 and returns NaNs).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import SampleRandom, register
from .elastic_transform import separable_blur

# (loc, scale, blur sigma, threshold, liquid intensity / mud sigma, mud?) per severity.
SPATTER = ((0.65, 0.3, 4, 0.69, 0.6, 0),
           (0.65, 0.3, 3, 0.68, 0.6, 0),
           (0.65, 0.3, 2, 0.68, 0.5, 0),
           (0.65, 0.3, 1, 0.65, 1.5, 1),
           (0.67, 0.4, 1, 0.65, 1.5, 1))
WATER = (175 / 255., 238 / 255., 238 / 255.)
MUD = (63 / 255., 42 / 255., 20 / 255.)
LUMA = (0.2989, 0.5870, 0.1140)

_TG22 = int(0.4142135623730950488016887242097 * (1 << 15) + 0.5)
_EMBOSS = ((-2., -1., 0.), (-1., 1., 1.), (0., 1., 2.))
# Line directions of the 5x5 chamfer mask of cv2.DIST_L2 / DIST_MASK_5, with their move costs
# (float32 1, 1.4, 2.1969, as OpenCV).
_LINES = (((0, 1), 1.0), ((1, 0), 1.0), ((1, 1), 1.4), ((1, -1), 1.4),
          ((1, 2), 2.1969), ((2, 1), 2.1969), ((1, -2), 2.1969), ((2, -1), 2.1969))


def _shifts3(p: Tensor):
    """The 3x3 neighbourhood views of a (B, H+2, W+2) padded map: dict (dy, dx) -> (B, H, W)."""
    h, w = p.shape[1] - 2, p.shape[2] - 2
    return {(dy, dx): p[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
            for dy in (-1, 0, 1) for dx in (-1, 0, 1)}


def canny(img: Tensor, low: int = 50, high: int = 150) -> Tensor:
    """cv2.Canny(img, low, high) (aperture 3, L1 gradient) of (B, H, W) uint8-valued images -> bool edges."""
    s = _shifts3(F.pad(img[:, None].float(), (1, 1, 1, 1), mode="replicate")[:, 0])
    dx = (s[-1, 1] - s[-1, -1]) + 2 * (s[0, 1] - s[0, -1]) + (s[1, 1] - s[1, -1])
    dy = (s[1, -1] - s[-1, -1]) + 2 * (s[1, 0] - s[-1, 0]) + (s[1, 1] - s[-1, 1])
    # Integers (|d| <= 1020) in float32; the sector tests below are OpenCV's integer ones,
    # rearranged so that every product is exact in float32.
    ax, ay = dx.abs(), dy.abs()
    mag = ax + ay
    n = _shifts3(F.pad(mag, (1, 1, 1, 1)))  # magnitude is 0 outside the image
    tg22x = ax * _TG22
    horizontal = ay * 32768 < tg22x                      # (|dy| << 15) < |dx| * TG22
    vertical = (ay - 2 * ax) * 32768 > tg22x             # (|dy| << 15) > |dx| * TG22 + (|dx| << 16)
    same_sign = (dx < 0) == (dy < 0)                     # (dx ^ dy) >= 0
    peak = torch.where(
        horizontal, (mag > n[0, -1]) & (mag >= n[0, 1]),
        torch.where(vertical, (mag > n[-1, 0]) & (mag >= n[1, 0]),
                    torch.where(same_sign, (mag > n[-1, -1]) & (mag > n[1, 1]),
                                (mag > n[-1, 1]) & (mag > n[1, -1]))))
    weak = peak & (mag > low)
    edges = weak & (mag > high)
    while True:  # hysteresis: grow strong edges through 8-connected weak ones
        before = edges
        for _ in range(4):
            edges = _dilate3(edges) & weak
        if torch.equal(edges, before):
            return edges


def _dilate3(m: Tensor) -> Tensor:
    """3x3 binary dilation of (B, H, W) bool, separable (False outside the image)."""
    p = F.pad(m, (1, 1, 1, 1))
    r = p[:, :, :-2] | p[:, :, 1:-1] | p[:, :, 2:]
    return r[:, :-2] | r[:, 1:-1] | r[:, 2:]


def chamfer_distance(zero: Tensor, cap: float = 20.0) -> Tensor:
    """min(cv2.distanceTransform(nonzero, DIST_L2, 5), cap) for zero = (B, H, W) bool of the 0 pixels.

    The 5x5 chamfer distance is the cheapest path of mask moves; an optimal path
    uses at most two move directions, both within the quadrant from the zero
    pixel to the target, so it stays inside the image and its moves can be
    taken direction by direction. Hence the distance is the composition of 8
    one-dimensional transforms min_t d(p - t v) + |t| w along the mask's line
    directions v, each done exactly by doubling steps (t = 1, 2, 4, ... up to
    cap / w, in both senses); outside the image is "no zero pixel".
    """
    big = 4.0 * cap + 64.0
    d = torch.where(zero, 0.0, big)
    for (vy, vx), w in _LINES:
        tmax = int(cap // w)
        covered, step = 0, 1
        while covered < tmax:
            t = min(step, tmax - covered)
            sy, sx = t * vy, t * vx
            p = F.pad(d, (abs(sx), abs(sx), abs(sy), abs(sy)), value=big)
            h, wd = d.shape[1:]
            fwd = p[:, abs(sy) + sy:abs(sy) + sy + h, abs(sx) + sx:abs(sx) + sx + wd]
            bwd = p[:, abs(sy) - sy:abs(sy) - sy + h, abs(sx) - sx:abs(sx) - sx + wd]
            d = torch.minimum(d, torch.minimum(fwd, bwd) + float(torch.tensor(w) * t))
            covered += t
            step *= 2
    return d.clamp(max=cap)


def _box3_sum(x: Tensor) -> Tensor:
    """3x3 sums of (B, H, W) with BORDER_REFLECT_101 (cv2.blur's default), rows then columns."""
    p = F.pad(x[:, None], (1, 1, 1, 1), mode="reflect")[:, 0]
    r = p[:, :, :-2] + p[:, :, 1:-1] + p[:, :, 2:]
    return r[:, :-2] + r[:, 1:-1] + r[:, 2:]


def equalize_hist(img: Tensor) -> Tensor:
    """cv2.equalizeHist of (B, H, W) int64 images in 0..255."""
    b = img.shape[0]
    flat = img.reshape(b, -1)
    total = flat.shape[1]
    hist = torch.zeros(b, 256, dtype=torch.int64, device=img.device)
    hist.scatter_add_(1, flat, torch.ones_like(flat))
    first = (hist > 0).to(torch.uint8).argmax(1, keepdim=True)
    h0 = hist.gather(1, first)
    scale = 255.0 / (total - h0).clamp(min=1).to(torch.float32)
    lut = torch.round((hist.cumsum(1) - h0).to(torch.float32) * scale).clamp_(0, 255).to(torch.int64)
    out = torch.where(h0 == total, flat, lut.gather(1, flat))  # one grey level: unchanged
    return out.reshape(img.shape)


def _liquid_mask(layer: Tensor) -> Tensor:
    """(B, H, W) thresholded layer -> m (B, H, W) in [0, 1] before the c4 factor."""
    lu8 = torch.floor(layer * 255).clamp_(0, 255)
    edges = canny(lu8)
    dist = chamfer_distance(edges)
    dist = torch.floor(_box3_sum(dist) / 9)                        # blur, astype(uint8)
    dist = equalize_hist(dist.to(torch.int64)).float()
    k = torch.tensor(_EMBOSS, device=layer.device).view(1, 1, 3, 3)
    dist = F.conv2d(F.pad(dist[:, None], (1, 1, 1, 1), mode="reflect"), k)[:, 0]
    dist = dist.round_().clamp_(0, 255)                            # filter2D to CV_8U
    dist = torch.round(_box3_sum(dist) / 9)                        # blur of uint8
    m = lu8 * dist
    peak = m.amax(dim=(1, 2), keepdim=True)
    return torch.where(peak > 0, m / peak.clamp(min=1e-12), torch.zeros_like(m))


def spatter_from_layer(x: Tensor, layer: Tensor, severity: int) -> Tensor:
    """The deterministic part: x (B, C, H, W), layer (B, H, W) blurred and thresholded."""
    c = SPATTER[severity - 1]
    ch = x.shape[1]
    if c[5] == 0:
        m = (_liquid_mask(layer) * c[4])[:, None]
        color = torch.tensor(WATER, device=x.device).view(1, 3, 1, 1)
        if ch == 3:
            return (x + m * color).clamp_(0, 1)
        luma = torch.tensor(LUMA, device=x.device).view(1, 3, 1, 1)
        add = ((m * color).clamp(0, 1) * luma).sum(1, keepdim=True)
        return (x + add).clamp_(0, 1)
    m = separable_blur((layer > c[3]).float(), (c[4], c[4]), 4.0, "nearest")[:, None]
    m = torch.where(m < 0.8, torch.zeros_like(m), m)
    color = torch.tensor(MUD, device=x.device).view(1, 3, 1, 1) * m
    if ch == 1:
        color = (color * torch.tensor(LUMA, device=x.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
    return (x * (1 - m) + color).clamp_(0, 1)


def spatter_layer(rng: SampleRandom, h: int, w: int, severity: int, device=None) -> Tensor:
    """(B, H, W): N(c0, c1^2) blurred by sigma c2 ('nearest' borders), values < c3 set to 0."""
    c = SPATTER[severity - 1]
    # Standard normals by the inverse CDF of one counter uniform each (half the cost of
    # rng.normal's float64 Box-Muller on CPU).
    layer = c[0] + c[1] * torch.special.ndtri(rng.uniform(h, w).to(device))
    layer = separable_blur(layer, (c[2], c[2]), 4.0, "nearest")
    return torch.where(layer < c[3], torch.zeros_like(layer), layer)


@register("spatter")
def spatter(x: Tensor, severity: int, rng: SampleRandom) -> Tensor:
    """x: (B, C, H, W) float32 in [0, 1] -> spattered batch, same shape."""
    layer = spatter_layer(rng, x.shape[-2], x.shape[-1], severity, x.device)
    return spatter_from_layer(x, layer, severity)
