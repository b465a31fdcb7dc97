"""RGB <-> HSV on image batches, as scikit-image's `color.rgb2hsv` / `color.hsv2rgb`.

Same conventions, so the corruptions that edit HSV channels match the
reference: H, S, V all in [0, 1]; hue of a gray pixel (max == min) is 0 and its
saturation 0; where several channels share the maximum, blue wins over green
over red (scikit-image assigns the red, green, blue cases in that order).
Channel axis is dim -3: (..., 3, H, W). Float tensors, any device.
"""
from __future__ import annotations

import torch
from torch import Tensor

# hsv2rgb's six hue sectors: which of (v, p, q, t) each of R, G, B takes.
_V, _P, _Q, _T = 0, 1, 2, 3
_SECTORS = ((_V, _T, _P), (_Q, _V, _P), (_P, _V, _T), (_P, _Q, _V), (_T, _P, _V), (_V, _P, _Q))


def rgb_to_hsv(rgb: Tensor) -> Tensor:
    """(..., 3, H, W) RGB in [0, 1] -> HSV, same shape and dtype."""
    r, g, b = rgb.unbind(-3)
    v = torch.maximum(torch.maximum(r, g), b)
    delta = v - torch.minimum(torch.minimum(r, g), b)
    gray = delta == 0
    safe_delta = torch.where(gray, torch.ones_like(delta), delta)
    s = torch.where(gray, torch.zeros_like(v), delta / torch.where(v > 0, v, torch.ones_like(v)))
    h = torch.where(b == v, 4.0 + (r - g) / safe_delta,
                    torch.where(g == v, 2.0 + (b - r) / safe_delta, (g - b) / safe_delta))
    h = torch.remainder(h / 6.0, 1.0)
    h = torch.where(gray, torch.zeros_like(h), h)
    return torch.stack((h, s, v), dim=-3)


def hsv_to_rgb(hsv: Tensor) -> Tensor:
    """(..., 3, H, W) HSV in [0, 1] -> RGB, same shape and dtype."""
    h, s, v = hsv.unbind(-3)
    h6 = h * 6.0
    hi = torch.floor(h6)
    f = h6 - hi
    p = v * (1.0 - s)
    q = v * (1.0 - f * s)
    t = v * (1.0 - (1.0 - f) * s)
    cand = torch.stack((v, p, q, t), dim=-3)                       # (..., 4, H, W)
    sector = torch.remainder(hi.to(torch.int64), 6)                # (..., H, W)
    table = torch.tensor(_SECTORS, dtype=torch.int64, device=hsv.device)   # (6, 3)
    idx = table[sector].movedim(-1, -3)                            # (..., 3, H, W)
    return torch.gather(cand, -3, idx)
