"""jpeg_compression: JPEG round trip at a low quality per severity, through torchvision.io.

The reference (imagecorruptions) saves the uint8 image with PIL at `quality`
(libjpeg-turbo defaults: 4:2:0 chroma, the accurate integer DCT, fancy
upsampling) and decodes it; grayscale goes L -> RGB -> JPEG -> L. torchvision's
`encode_jpeg` / `decode_jpeg` call libjpeg-turbo with the same defaults, so on
CPU the round trip equals PIL's bit for bit (tests/eval/test_jpeg_torchvision.py).
Batches go through torchvision's list API: on CUDA tensors that is nvJPEG, all
images at once (nvJPEG's codec is not libjpeg: tests/eval/test_jpeg_torchvision.py
compares it with the CPU path where a GPU is present). torchvision 0.29 marks its
image codecs deprecated in favour of TorchCodec; the warning is silenced here, and the
tests will say when the functions go.
"""
from __future__ import annotations

import warnings
from typing import List

import torch
from torch import Tensor

from .base import SampleRandom, register

QUALITY = (25, 18, 15, 10, 7)
# PIL's RGB -> L: (19595 R + 38470 G + 7471 B + 2^15) >> 16 (ITU-R 601-2 luma, 16-bit fixed point).
_PIL_LUMA = (19595, 38470, 7471)


def jpeg_roundtrip(img: Tensor, quality: int) -> Tensor:
    """JPEG-encode and decode a batch like PIL's save(quality=q) + open.

    img: (B, 3, H, W) RGB or (B, 1, H, W) grayscale, uint8, CPU or CUDA.
    Returns uint8 of the same shape and device.
    """
    if img.dtype != torch.uint8 or img.ndim != 4 or img.shape[1] not in (1, 3):
        raise ValueError(f"img must be uint8 (B, 1 or 3, H, W), got {img.dtype} {tuple(img.shape)}")
    from torchvision.io import ImageReadMode, decode_jpeg, encode_jpeg

    gray = img.shape[1] == 1
    rgb = img.expand(-1, 3, -1, -1) if gray else img
    images: List[Tensor] = list(rgb.contiguous().unbind(0))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torchvision\.io")
        encoded = encode_jpeg(images, quality=quality)
        # decode_jpeg takes the bytes on CPU whatever `device` it decodes on.
        decoded = decode_jpeg([e.cpu() for e in encoded], mode=ImageReadMode.RGB,
                              device=img.device)
    out = torch.stack(decoded)
    if not gray:
        return out
    w = torch.tensor(_PIL_LUMA, dtype=torch.int32, device=out.device).view(1, 3, 1, 1)
    return (((out.to(torch.int32) * w).sum(1, keepdim=True) + (1 << 15)) >> 16).to(torch.uint8)


@register("jpeg_compression")
def jpeg_compression(x: Tensor, severity: int, rng: SampleRandom) -> Tensor:
    """x: (B, C, H, W) float32 in [0, 1] -> decoded JPEG of its 8-bit version, /255."""
    img = torch.round(x.clamp(0, 1) * 255).to(torch.uint8)
    return jpeg_roundtrip(img, QUALITY[severity - 1]).to(torch.float32) / 255
