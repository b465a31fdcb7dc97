"""frost: the image blended with a crop of a frost photograph, c0 * x + c1 * frost.

Frost sources (`frost_source()` says which one is in use):

- 'imagecorruptions' (the default): the reference's frost photographs, shipped
  by the `imagecorruptions` package (imagecorruptions/frost/frost1.png ...
  frost5.jpg; the reference draws np.random.randint(5), so frost6.jpg is never
  used), read once with PIL, converted to RGB uint8 tensors and cached. Without
  the package, frost raises ImportError saying to `pip install imagecorruptions`
  or to opt in to the stand-in: frost numbers are comparable with ImageNet-C's
  only with the photographs, so the stand-in is never used silently.
- 'procedural' (opt in: ROBUSTOPS_FROST_SOURCE=procedural, or
  `set_frost_source("procedural")`): five fixed textures (the same on every
  machine: drawn from the counter RNG with a constant key) of blurred random
  line segments (ice needles of random length, angle and brightness, splatted
  into a density map, saturated, plus a broad low-frequency haze), each mapped
  to the per-channel mean and standard deviation of the corresponding
  photograph. The statistics of the blend are then close to the reference's,
  but not the pixels. Reports state which source their frost numbers used
  (CorruptionAccuracy.sources).

Per image, as the reference: the frost image is rescaled by 1.1 x max(1, image
side / frost side) (bicubic, a = -0.75, half-pixel centres, as cv2.INTER_CUBIC;
OpenCV's fixed-point uint8 arithmetic can differ by one grey level), then a
random H x W crop is taken. The choice of frost image (floor(5u)) and the crop's
top and left offsets (floor(u * (rescaled side - image side))) come from three
per-sample uniforms, in that order. The rescaled frost images are cached per
(source, image size, device) and cropped with one batched gather.

Grayscale images get the reference's luma of the crop, which weights the
channels of OpenCV's BGR array with (0.2989, 0.587, 0.114): on RGB that is
(0.114, 0.587, 0.2989) for (R, G, B).
"""
from __future__ import annotations

import functools
import importlib.util
import math
import os
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ...counter_rng import counter_uniform
from .base import SampleRandom, register
from .gaussian_filter import gaussian_filter

# (image weight, frost weight) per severity.
FROST = ((1.0, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75))
FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg")
# Per-channel (R, G, B) mean and std of those five photographs, for the procedural stand-in,
# with their (height, width).
_PHOTO_MEAN = ((77.7, 149.1, 165.7), (200.8, 205.4, 214.5), (200.8, 205.4, 214.5),
               (137.6, 152.8, 165.2), (112.4, 123.4, 134.8))
_PHOTO_STD = ((26.9, 16.5, 15.3), (21.4, 22.1, 22.6), (21.4, 22.1, 22.6),
              (28.5, 28.5, 29.9), (44.4, 43.3, 41.7))
_PHOTO_SIZE = ((600, 900), (315, 560), (315, 560), (350, 527), (495, 660))
_GRAY_FROM_RGB = (0.1140, 0.5870, 0.2989)


def _frost_dir() -> Optional[str]:
    """imagecorruptions/frost when the package and the five photographs are there, else None."""
    try:
        spec = importlib.util.find_spec("imagecorruptions")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    folder = os.path.join(os.path.dirname(spec.origin), "frost")
    if all(os.path.isfile(os.path.join(folder, f)) for f in FILES):
        return folder
    return None


def _load_photos(folder: str) -> List[Tensor]:
    from PIL import Image  # only for reading the asset files, once

    out = []
    for name in FILES:
        with Image.open(os.path.join(folder, name)) as im:
            arr = torch.frombuffer(bytearray(im.convert("RGB").tobytes()), dtype=torch.uint8)
            out.append(arr.reshape(im.size[1], im.size[0], 3).permute(2, 0, 1).contiguous())
    return out


def _procedural_photo(k: int) -> Tensor:
    """(3, H, W) uint8 ice-crystal texture k, fixed (counter RNG with a constant key)."""
    h, w = _PHOTO_SIZE[k]
    key = torch.tensor([k], dtype=torch.int64)
    stream = iter(range(1, 100))

    def uniform(n: int) -> Tensor:
        return counter_uniform(0x46524F5354, next(stream), key, n)[0].double()

    n_seg, n_pts = (h * w) // 150, 48
    cy, cx = uniform(n_seg) * h, uniform(n_seg) * w
    angle = uniform(n_seg) * math.pi
    length = 4.0 * torch.exp(uniform(n_seg) * math.log(12.0))   # 4 .. 48 px, log-uniform
    weight = 0.3 + 0.7 * uniform(n_seg)
    t = torch.linspace(-0.5, 0.5, n_pts, dtype=torch.float64)
    py = (cy[:, None] + t * length[:, None] * torch.sin(angle)[:, None]).round().long()
    px = (cx[:, None] + t * length[:, None] * torch.cos(angle)[:, None]).round().long()
    ok = (py >= 0) & (py < h) & (px >= 0) & (px < w)
    wts = (weight[:, None] * (length[:, None] / n_pts)).expand_as(py)
    density = torch.zeros(h * w, dtype=torch.float64)
    density.index_add_(0, (py * w + px)[ok], wts[ok])
    density = gaussian_filter(density.view(1, 1, h, w).float(), 0.8)
    needles = 1 - torch.exp(-2.0 * density)                     # saturating overlaps
    haze = gaussian_filter(torch.log(uniform(h * w)).neg().view(1, 1, h, w).float(), 24.0)

    def standard(a: Tensor) -> Tensor:
        return (a - a.mean()) / a.std()

    s = standard(standard(needles) + 0.6 * standard(haze))
    mean = torch.tensor(_PHOTO_MEAN[k]).view(3, 1, 1)
    std = torch.tensor(_PHOTO_STD[k]).view(3, 1, 1)
    return (mean + std * s[0]).round().clamp(0, 255).to(torch.uint8)


SOURCES = ("imagecorruptions", "procedural")
SOURCE_ENV = "ROBUSTOPS_FROST_SOURCE"
_chosen: Optional[str] = None  # set_frost_source's choice; None: the environment's, else default


def set_frost_source(source: Optional[str]) -> None:
    """Choose the frost images for this process: 'imagecorruptions' (the reference
    photographs; the default), 'procedural' (the stand-in) or None (back to
    $ROBUSTOPS_FROST_SOURCE, else the default)."""
    global _chosen
    if source is not None:
        _check_source(source, "set_frost_source")
    _chosen = source


def _check_source(source, where: str) -> str:
    if not isinstance(source, str):
        raise TypeError(f"{where}: frost source must be a str, got {type(source).__name__}")
    if source not in SOURCES:
        raise ValueError(f"{where}: unknown frost source {source!r}; choose from "
                         f"{', '.join(SOURCES)}")
    return source


def _requested() -> str:
    if _chosen is not None:
        return _chosen
    return _check_source(os.environ.get(SOURCE_ENV, "imagecorruptions").strip().lower(),
                         f"${SOURCE_ENV}")


@functools.lru_cache(maxsize=None)
def _photos(source: str) -> Tuple[Tensor, ...]:
    """The five frost images of `source`, (3, H, W) uint8 each."""
    if source == "procedural":
        return tuple(_procedural_photo(k) for k in range(len(FILES)))
    folder = _frost_dir()
    if folder is None:
        raise ImportError(
            "frost needs the reference frost photographs of the imagecorruptions package, "
            "which is not installed: `pip install imagecorruptions` (or robustops' `test` "
            "extra), or leave frost out of the corruptions, or opt in to the procedural "
            f"stand-in (not comparable with ImageNet-C numbers) with {SOURCE_ENV}=procedural "
            "or robustops.eval.corruptions.frost.set_frost_source('procedural')")
    return tuple(_load_photos(folder))


def _sources() -> Tuple[str, Tuple[Tensor, ...]]:
    """(source in use, its five frost images); raises ImportError as `frost_source`."""
    source = _requested()
    return source, _photos(source)


def frost_source() -> str:
    """The frost images in use: 'imagecorruptions' (the package's photographs) or
    'procedural' (the stand-in, only when asked for). Raises ImportError when the
    photographs are asked for (the default) but imagecorruptions is not installed."""
    return _sources()[0]


def rescaled_shape(frost_hw: Tuple[int, int], image_hw: Tuple[int, int]) -> Tuple[int, int]:
    """(height, width) the reference resizes a frost image to for an image of size image_hw."""
    fh, fw = frost_hw
    h, w = image_hw
    if fh >= h and fw >= w:
        s = 1.0
    elif fh < h and fw >= w:
        s = h / fh
    elif fh >= h and fw < w:
        s = w / fw
    else:
        s = max(h / fh, w / fw)
    s *= 1.1
    return int(math.ceil(fh * s)), int(math.ceil(fw * s))


def resize_cubic(img: Tensor, size: Tuple[int, int]) -> Tensor:
    """(3, H, W) uint8 -> (3, *size) uint8, as cv2.resize(INTER_CUBIC) up to one grey level."""
    if tuple(img.shape[-2:]) == tuple(size):
        return img
    y = F.interpolate(img[None].float(), size=size, mode="bicubic", align_corners=False)
    return y[0].round_().clamp_(0, 255).to(torch.uint8)


@functools.lru_cache(maxsize=8)
def _rescaled(source: str, h: int, w: int, device: torch.device) -> Tuple[Tensor, Tensor]:
    """(stack (5, 3, Hmax, Wmax) uint8, sizes (5, 2) int64) of the rescaled frost images, on device."""
    photos = _photos(source)
    imgs = [resize_cubic(p, rescaled_shape(tuple(p.shape[-2:]), (h, w))) for p in photos]
    hm = max(i.shape[1] for i in imgs)
    wm = max(i.shape[2] for i in imgs)
    stack = torch.zeros(len(imgs), 3, hm, wm, dtype=torch.uint8)
    for k, i in enumerate(imgs):
        stack[k, :, :i.shape[1], :i.shape[2]] = i
    sizes = torch.tensor([list(i.shape[1:]) for i in imgs], dtype=torch.int64)
    return stack.to(device), sizes.to(device)


def _randint(u: Tensor, n: Tensor) -> Tensor:
    """floor(u * n) in 0..n-1 (float64, so u < 1 never rounds up to n)."""
    k = torch.floor(u.double() * n.double()).long()
    return torch.minimum(k, n - 1).clamp_(min=0)


def frost_crops(rng: SampleRandom, h: int, w: int, device=None) -> Tensor:
    """(B, 3, H, W) float32 in 0..255: each sample's random crop of a rescaled frost image."""
    stack, sizes = _rescaled(frost_source(), h, w,
                             torch.device(device) if device is not None else torch.device("cpu"))
    n = sizes.shape[0]
    idx = _randint(rng.per_sample_uniform().to(stack.device), torch.full_like(sizes[:, 0][:1], n))
    top = _randint(rng.per_sample_uniform().to(stack.device), sizes[idx, 0] - h)
    left = _randint(rng.per_sample_uniform().to(stack.device), sizes[idx, 1] - w)
    rows = top[:, None] + torch.arange(h, device=stack.device)
    cols = left[:, None] + torch.arange(w, device=stack.device)
    crop = stack[idx[:, None, None], :, rows[:, :, None], cols[:, None, :]]   # (B, H, W, 3)
    return crop.permute(0, 3, 1, 2).float()


def frost_blend(x: Tensor, crop: Tensor, severity: int) -> Tensor:
    """The deterministic part: x (B, C, H, W) in [0, 1], crop (B, 3, H, W) RGB in 0..255."""
    c0, c1 = FROST[severity - 1]
    if x.shape[1] == 1:
        crop = (crop * torch.tensor(_GRAY_FROM_RGB, device=crop.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
    return (c0 * x + (c1 / 255.0) * crop.to(x)).clamp_(0, 1)


@register("frost")
def frost(x: Tensor, severity: int, rng: SampleRandom) -> Tensor:
    """x: (B, C, H, W) float32 in [0, 1] -> frosted batch, same shape."""
    crop = frost_crops(rng, x.shape[-2], x.shape[-1], x.device)
    return frost_blend(x, crop, severity)
