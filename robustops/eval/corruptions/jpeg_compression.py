"""jpeg_compression: JPEG round trip at a low quality per severity (PIL/libjpeg-turbo defaults)."""
from __future__ import annotations

import torch
from torch import Tensor

from .base import SampleRandom, register
from .jpeg_codec import jpeg_roundtrip

QUALITY = (25, 18, 15, 10, 7)


@register("jpeg_compression")
def jpeg_compression(x: Tensor, severity: int, rng: SampleRandom) -> Tensor:
    """x: (B, C, H, W) float32 in [0, 1] -> decoded JPEG of its 8-bit version, /255.

    The reference saves the uint8 image with PIL at `quality` (4:2:0 chroma,
    grayscale via L -> RGB -> JPEG -> L) and decodes it; `jpeg_roundtrip`
    reproduces libjpeg's integer pipeline, so values match PIL's exactly.
    """
    img = torch.round(x.clamp(0, 1) * 255).to(torch.int32)
    return jpeg_roundtrip(img, QUALITY[severity - 1]).to(torch.float32) / 255
