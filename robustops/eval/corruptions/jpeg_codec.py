"""Baseline JPEG encode + decode round trip of 8-bit image batches, as libjpeg(-turbo) does it.

Emulates, in integer tensor arithmetic, what PIL's `save(..., 'JPEG', quality=q)`
followed by decoding gives (PIL ships libjpeg-turbo; defaults: 4:2:0 chroma
subsampling, the accurate integer DCT, fancy upsampling):

  encoder: RGB -> YCbCr with libjpeg's 16-bit fixed-point tables (jccolor.c);
           edge replication to whole blocks/MCUs (jcprepct.c, jcsample.c);
           2x2 chroma box downsampling with the alternating 1,2 rounding bias;
           integer "islow" forward DCT (jfdctint.c);
           quantisation by the standard IJG tables scaled by libjpeg's quality
           formula (jcparam.c, baseline: entries clamped to 1..255), rounding
           half away from zero (jcdctmgr.c);
  decoder: dequantisation and integer "islow" inverse DCT (jidctint.c),
           clamped to 0..255 as libjpeg-turbo's SIMD code does (its C range
           table would wrap values beyond +-512 instead, far outside what
           quantisation errors produce); "fancy" triangle-filter chroma
           upsampling with its ordered-dither rounding (jdsample.c
           h2v2_fancy_upsample); YCbCr -> RGB with libjpeg's tables (jdcolor.c).

Every step is integer and mirrors the library's arithmetic, so the result is
the same as libjpeg's bit for bit (the tests compare against PIL). Tensors
hold uint8 values as int32, any device; all blocks of a batch go through each
step at once.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

# IJG standard quantisation tables (JPEG spec K.1/K.2), natural (row-major) order.
STD_LUMINANCE = (
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99,
)
STD_CHROMINANCE = (
    17, 18, 24, 47, 99, 99, 99, 99,
    18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99,
) + (99,) * 32


def quality_scaling(quality: int) -> int:
    """libjpeg's jpeg_quality_scaling: quality 1..100 -> percentage scale factor."""
    quality = min(max(int(quality), 1), 100)
    return 5000 // quality if quality < 50 else 200 - quality * 2


def quant_table(base, quality: int) -> list:
    """The 64 quantiser steps libjpeg uses at `quality` (force_baseline: 1..255)."""
    scale = quality_scaling(quality)
    return [min(max((b * scale + 50) // 100, 1), 255) for b in base]


@functools.lru_cache(maxsize=64)
def _qtable(quality: int, chroma: bool, device: torch.device) -> Tensor:
    q = quant_table(STD_CHROMINANCE if chroma else STD_LUMINANCE, quality)
    return torch.tensor(q, dtype=torch.int32, device=device).view(8, 8)


# ---------------------------------------------------------------- colour ---
_SCALEBITS = 16
_ONE_HALF = 1 << (_SCALEBITS - 1)


def _fix(v: float) -> int:
    return int(v * (1 << _SCALEBITS) + 0.5)


def rgb_to_ycbcr(rgb: Tensor) -> Tensor:
    """(..., 3, H, W) int32 0..255 -> Y, Cb, Cr (..., 3, H, W) int32 0..255 (jccolor.c)."""
    r, g, b = rgb.unbind(-3)
    y = (_fix(0.29900) * r + _fix(0.58700) * g + _fix(0.11400) * b + _ONE_HALF) >> _SCALEBITS
    off = (128 << _SCALEBITS) + _ONE_HALF - 1
    cb = (-_fix(0.16874) * r - _fix(0.33126) * g + _fix(0.5) * b + off) >> _SCALEBITS
    cr = (_fix(0.5) * r - _fix(0.41869) * g - _fix(0.08131) * b + off) >> _SCALEBITS
    return torch.stack((y, cb, cr), dim=-3)


def ycbcr_to_rgb(ycc: Tensor) -> Tensor:
    """(..., 3, H, W) int32 Y, Cb, Cr -> RGB int32 0..255 (jdcolor.c ycc_rgb_convert)."""
    y, cb, cr = ycc.unbind(-3)
    cb = cb - 128
    cr = cr - 128
    r = y + ((_fix(1.40200) * cr + _ONE_HALF) >> _SCALEBITS)
    g = y + ((-_fix(0.34414) * cb + _ONE_HALF - _fix(0.71414) * cr) >> _SCALEBITS)
    b = y + ((_fix(1.77200) * cb + _ONE_HALF) >> _SCALEBITS)
    return torch.stack((r, g, b), dim=-3).clamp_(0, 255)


# ------------------------------------------------------------------- DCT ---
_CONST_BITS = 13
_PASS1_BITS = 2
_F0_298 = 2446    # FIX(0.298631336)
_F0_390 = 3196    # FIX(0.390180644)
_F0_541 = 4433    # FIX(0.541196100)
_F0_765 = 6270    # FIX(0.765366865)
_F0_899 = 7373    # FIX(0.899976223)
_F1_175 = 9633    # FIX(1.175875602)
_F1_501 = 12299   # FIX(1.501321110)
_F1_847 = 15137   # FIX(1.847759065)
_F1_961 = 16069   # FIX(1.961570560)
_F2_053 = 16819   # FIX(2.053119869)
_F2_562 = 20995   # FIX(2.562915447)
_F3_072 = 25172   # FIX(3.072711026)


def _descale(x: Tensor, n: int) -> Tensor:
    return (x + (1 << (n - 1))) >> n


def _fdct_1d(d: Tensor, dim: int, pass1: bool) -> Tensor:
    """One pass of jfdctint.c along axis `dim` (size 8)."""
    d0, d1, d2, d3, d4, d5, d6, d7 = d.unbind(dim)
    tmp0, tmp7 = d0 + d7, d0 - d7
    tmp1, tmp6 = d1 + d6, d1 - d6
    tmp2, tmp5 = d2 + d5, d2 - d5
    tmp3, tmp4 = d3 + d4, d3 - d4
    tmp10, tmp13 = tmp0 + tmp3, tmp0 - tmp3
    tmp11, tmp12 = tmp1 + tmp2, tmp1 - tmp2
    if pass1:
        o0 = (tmp10 + tmp11) << _PASS1_BITS
        o4 = (tmp10 - tmp11) << _PASS1_BITS
        sh = _CONST_BITS - _PASS1_BITS
    else:
        o0 = _descale(tmp10 + tmp11, _PASS1_BITS)
        o4 = _descale(tmp10 - tmp11, _PASS1_BITS)
        sh = _CONST_BITS + _PASS1_BITS
    z1 = (tmp12 + tmp13) * _F0_541
    o2 = _descale(z1 + tmp13 * _F0_765, sh)
    o6 = _descale(z1 - tmp12 * _F1_847, sh)
    r4, r5, r6, r7 = _odd_rotation(tmp4, tmp5, tmp6, tmp7)
    o7, o5, o3, o1 = (_descale(r, sh) for r in (r4, r5, r6, r7))
    return torch.stack((o0, o1, o2, o3, o4, o5, o6, o7), dim=dim)


def _odd_rotation(a: Tensor, b: Tensor, c: Tensor, d: Tensor):
    """The odd-part butterfly shared by jfdctint.c and jidctint.c (same constants, same
    sums): inputs (tmp4..tmp7) forward, (c7, c5, c3, c1) inverse; outputs undescaled."""
    z1, z2, z3, z4 = a + d, b + c, a + c, b + d
    z5 = (z3 + z4) * _F1_175
    z1 = z1 * -_F0_899
    z2 = z2 * -_F2_562
    z3 = z3 * -_F1_961 + z5
    z4 = z4 * -_F0_390 + z5
    return (a * _F0_298 + z1 + z3, b * _F2_053 + z2 + z4, c * _F3_072 + z2 + z3,
            d * _F1_501 + z1 + z4)


def fdct_islow(blocks: Tensor) -> Tensor:
    """(8, 8, N) int32 level-shifted samples (row, column, block) -> DCT coefficients
    scaled by 8, (vertical, horizontal frequency, block). Blocks on the last axis
    keep every butterfly operand contiguous."""
    return _fdct_1d(_fdct_1d(blocks, 1, pass1=True), 0, pass1=False)


def _idct_1d(z: Tensor, dim: int, pass1: bool) -> Tensor:
    """One pass of jidctint.c along axis `dim` (size 8)."""
    c0, c1, c2, c3, c4, c5, c6, c7 = z.unbind(dim)
    z1 = (c2 + c6) * _F0_541
    tmp2 = z1 - c6 * _F1_847
    tmp3 = z1 + c2 * _F0_765
    tmp0 = (c0 + c4) << _CONST_BITS
    tmp1 = (c0 - c4) << _CONST_BITS
    tmp10, tmp13 = tmp0 + tmp3, tmp0 - tmp3
    tmp11, tmp12 = tmp1 + tmp2, tmp1 - tmp2
    tmp0, tmp1, tmp2, tmp3 = _odd_rotation(c7, c5, c3, c1)
    sh = _CONST_BITS - _PASS1_BITS if pass1 else _CONST_BITS + _PASS1_BITS + 3
    return torch.stack((
        _descale(tmp10 + tmp3, sh), _descale(tmp11 + tmp2, sh),
        _descale(tmp12 + tmp1, sh), _descale(tmp13 + tmp0, sh),
        _descale(tmp13 - tmp0, sh), _descale(tmp12 - tmp1, sh),
        _descale(tmp11 - tmp2, sh), _descale(tmp10 - tmp3, sh)), dim=dim)


def idct_islow(coef: Tensor) -> Tensor:
    """(8, 8, N) int32 dequantised coefficients -> samples 0..255 (level shift, clamp).

    jidctint.c's shortcuts for all-zero AC columns/rows give the same values as
    the full butterflies, so they need no special case here.
    """
    out = _idct_1d(_idct_1d(coef, 0, pass1=True), 1, pass1=False)
    return (out + 128).clamp_(0, 255)


def quantize(coef: Tensor, q: Tensor) -> Tensor:
    """Quantise DCT-times-8 coefficients (8, 8, N) by q (8, 8, 1): round half away from zero
    (jcdctmgr.c). The integer quotient is taken in float32, exact here: the numerator is
    below 2^16, so a quotient just under an integer stays more than 2^-16 (relative)
    below it, beyond float32's rounding."""
    div = (q * 8).to(torch.float32)
    mag = torch.floor((coef.abs() + (q * 4)).to(torch.float32) / div).to(coef.dtype)
    return torch.where(coef < 0, -mag, mag)


def _to_blocks(plane: Tensor) -> Tensor:
    """(N, H, W) with H, W multiples of 8 -> (8, 8, N * H/8 * W/8) blocks, block index last."""
    n, h, w = plane.shape
    blocks = plane.reshape(n, h // 8, 8, w // 8, 8).permute(2, 4, 0, 1, 3)
    return blocks.reshape(8, 8, -1)


def _from_blocks(blocks: Tensor, n: int, h: int, w: int) -> Tensor:
    """Inverse of _to_blocks."""
    blocks = blocks.reshape(8, 8, n, h // 8, w // 8).permute(2, 3, 0, 4, 1)
    return blocks.reshape(n, h, w)


def _code_plane(plane: Tensor, q: Tensor) -> Tensor:
    """Encode + decode one component plane (N, H, W) int32 (H, W multiples of 8)."""
    q = q[:, :, None]
    coef = quantize(fdct_islow(_to_blocks(plane) - 128), q)
    return _from_blocks(idct_islow(coef * q), *plane.shape)


def _pad_replicate(x: Tensor, h: int, w: int) -> Tensor:
    """Pad (N, H, W) at the bottom/right to (N, h, w) by repeating the last row/column."""
    dh, dw = h - x.shape[-2], w - x.shape[-1]
    if dh == 0 and dw == 0:
        return x
    # F.pad's replicate mode needs a float tensor with a channel axis.
    return F.pad(x.unsqueeze(1).float(), (0, dw, 0, dh), mode="replicate").squeeze(1).to(x.dtype)


def _ceil_to(n: int, m: int) -> int:
    return -(-n // m) * m


def _downsample_h2v2(plane: Tensor) -> Tensor:
    """(N, 2h, 2w) -> (N, h, w): 2x2 mean with bias 1, 2, 1, 2, ... along each row (jcsample.c)."""
    rows = plane[:, 0::2] + plane[:, 1::2]
    s = rows[:, :, 0::2] + rows[:, :, 1::2]
    bias = 1 + (torch.arange(s.shape[-1], device=plane.device, dtype=plane.dtype) & 1)
    return (s + bias) >> 2


def _upsample_h2v2_fancy(plane: Tensor, out_h: int, out_w: int) -> Tensor:
    """(N, h, w) real chroma samples -> (N, out_h, out_w) by jdsample.c's h2v2_fancy_upsample.

    Triangle filter (9/16, 3/16, 3/16, 1/16) with the image edges replicated
    and the rounding bias 8 for even and 7 for odd output columns.
    """
    above = torch.cat((plane[:, :1], plane[:, :-1]), dim=1)
    below = torch.cat((plane[:, 1:], plane[:, -1:]), dim=1)
    cs = torch.stack((3 * plane + above, 3 * plane + below), dim=2)       # (N, h, 2, w)
    left = torch.cat((cs[..., :1], cs[..., :-1]), dim=-1)
    right = torch.cat((cs[..., 1:], cs[..., -1:]), dim=-1)
    even = (3 * cs + left + 8) >> 4
    odd = (3 * cs + right + 7) >> 4
    out = torch.stack((even, odd), dim=-1)                                # (N, h, 2, w, 2)
    n, h, _, w, _ = out.shape
    return out.reshape(n, 2 * h, 2 * w)[:, :out_h, :out_w]


def jpeg_roundtrip(img: Tensor, quality: int) -> Tensor:
    """JPEG-compress and decode a batch like PIL (libjpeg-turbo, 4:2:0, islow DCT).

    img: (B, 3, H, W) RGB or (B, 1, H, W) grayscale, integer-valued 0..255 (any
    dtype). Grayscale goes through the luminance channel only, which is exactly
    what PIL's L -> RGB -> JPEG -> L gives: gray RGB has Y equal to the gray
    value and Cb = Cr = 128 (zero coefficients) in libjpeg's fixed point.
    Returns int32 of the same shape, values 0..255.
    """
    b, c, h, w = img.shape
    x = img.to(torch.int32)
    dev = img.device
    qy = _qtable(quality, False, dev)
    if c == 1:
        y = _pad_replicate(x[:, 0], _ceil_to(h, 8), _ceil_to(w, 8))
        return _code_plane(y, qy)[:, None, :h, :w]
    qc = _qtable(quality, True, dev)
    ycc = rgb_to_ycbcr(x)                                                  # (B, 3, H, W)
    # Luma: whole 8x8 blocks, edges replicated.
    y = _pad_replicate(ycc[:, 0], _ceil_to(h, 8), _ceil_to(w, 8))
    y = _code_plane(y, qy)[:, :h, :w]
    # Chroma: full-resolution rows padded to even and columns to whole MCUs
    # (16), downsampled, then the chroma rows padded to whole blocks.
    ch, cw = -(-h // 2), -(-w // 2)
    chroma = ycc[:, 1:].reshape(b * 2, h, w)
    chroma = _downsample_h2v2(_pad_replicate(chroma, 2 * ch, _ceil_to(w, 16)))
    chroma = _pad_replicate(chroma, _ceil_to(ch, 8), chroma.shape[-1])
    chroma = _code_plane(chroma, qc)[:, :ch, :cw]
    chroma = _upsample_h2v2_fancy(chroma, h, w).reshape(b, 2, h, w)
    return ycbcr_to_rgb(torch.cat((y[:, None], chroma), dim=1))
