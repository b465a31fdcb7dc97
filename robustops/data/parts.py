"""``parts``: generated objects made of parts, with per-pixel part masks and optional
spurious backgrounds.

Five object classes are built from a shared vocabulary of K = 6 parts (mask ids 1..6;
0 is background), each class with its own set of parts and layout:

==========  ==========================================  ===========================
class       parts (instances)                           layout
==========  ==========================================  ===========================
car         body (2: chassis, cabin), wheel (2)         side view
plane       body, wing (2), tail                        top view, swept wings
bird        head, body, wing, leg (2)                   side view
fish        head, body, tail                            side view, triangular tail
dog         head, body, leg (4), tail                   side view
==========  ==========================================  ===========================

No two classes share a part set, so the parts present decide the class (what the
part-based models of METHODS.md section 1 exploit). Each image jitters the object's
position, scale, rotation and facing (mirrored half of the time) and every part
instance's position and size; each part id gets its own saturated colour with a faint
stripe shading. Backgrounds are low-saturation: with probability ``spurious`` the
background is the pattern tied to the label's class (stripes, checkerboard, dots, waves
or grid in a class hue), otherwise a random smooth blotchy background tied to no class.

Everything is drawn from generators keyed by (seed, split), never the global RNG; the
splits 'train', 'val' and 'test' are independent draws. Objects, poses and colours do
not depend on ``spurious`` or ``mismatch``: for one (seed, split) those only change the
backgrounds, so paired sets (same objects, different backgrounds) measure reliance on
the background directly.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..arguments import require_bool, require_real
from . import _render as R
from .shapes import TEXTURE_NAMES, _texture

__all__ = ["PartsDataset", "make_parts", "PART_CLASS_NAMES", "PART_NAMES", "CLASS_PARTS"]

PART_CLASS_NAMES = ("car", "plane", "bird", "fish", "dog")
# Index = mask id: part_names[mask[i, j]] names a pixel.
PART_NAMES = ("background", "head", "body", "wheel", "wing", "tail", "leg")
_P = {name: i for i, name in enumerate(PART_NAMES)}

# Layouts in the object frame (x right = facing direction, y up, object within ~[-1, 1]^2),
# drawn in order (later parts cover earlier ones). Each entry: (part, primitive, centre x,
# centre y, angle in degrees, primitive sizes): 'ellipse' (rx, ry), 'box' (hx, hy, corner
# radius), 'tri' (three vertices relative to the centre).
_LAYOUTS = {
    "car": [
        ("body", "box", -0.08, 0.30, 0.0, (0.45, 0.17, 0.1)),
        ("body", "box", 0.0, 0.0, 0.0, (0.85, 0.22, 0.08)),
        ("wheel", "ellipse", -0.5, -0.24, 0.0, (0.21, 0.21)),
        ("wheel", "ellipse", 0.5, -0.24, 0.0, (0.21, 0.21)),
    ],
    "plane": [
        ("wing", "ellipse", 0.05, 0.42, 25.0, (0.17, 0.42)),
        ("wing", "ellipse", 0.05, -0.42, -25.0, (0.17, 0.42)),
        ("tail", "ellipse", -0.76, 0.0, 0.0, (0.1, 0.32)),
        ("body", "ellipse", 0.0, 0.0, 0.0, (0.95, 0.16)),
    ],
    "bird": [
        ("leg", "box", -0.1, -0.48, 0.0, (0.05, 0.22, 0.0)),
        ("leg", "box", 0.12, -0.48, 0.0, (0.05, 0.22, 0.0)),
        ("body", "ellipse", 0.0, 0.0, 10.0, (0.52, 0.31)),
        ("head", "ellipse", 0.5, 0.36, 0.0, (0.21, 0.21)),
        ("wing", "ellipse", -0.1, 0.08, 15.0, (0.36, 0.14)),
    ],
    "fish": [
        ("tail", "tri", -0.78, 0.0, 0.0, ((0.25, 0.0), (-0.17, 0.36), (-0.17, -0.36))),
        ("body", "ellipse", -0.05, 0.0, 0.0, (0.56, 0.32)),
        ("head", "ellipse", 0.55, 0.0, 0.0, (0.28, 0.26)),
    ],
    "dog": [
        ("leg", "box", -0.42, -0.42, 0.0, (0.06, 0.24, 0.02)),
        ("leg", "box", -0.24, -0.42, 0.0, (0.06, 0.24, 0.02)),
        ("leg", "box", 0.24, -0.42, 0.0, (0.06, 0.24, 0.02)),
        ("leg", "box", 0.42, -0.42, 0.0, (0.06, 0.24, 0.02)),
        ("tail", "box", -0.64, 0.14, 35.0, (0.22, 0.05, 0.03)),
        ("body", "ellipse", 0.0, 0.0, 0.0, (0.58, 0.25)),
        ("head", "ellipse", 0.6, 0.29, 0.0, (0.21, 0.21)),
    ],
}
CLASS_PARTS = tuple(tuple(sorted({_P[e[0]] for e in _LAYOUTS[c]})) for c in PART_CLASS_NAMES)
_MAX_INSTANCES = max(len(v) for v in _LAYOUTS.values())

# The class-tied background patterns (indices into shapes.TEXTURE_NAMES) and their hues.
_BG_PATTERNS = tuple(TEXTURE_NAMES.index(t) for t in ("stripes", "checkerboard", "dots",
                                                       "waves", "grid"))
_BG_HUES = (0.08, 0.58, 0.33, 0.83, 0.0)

_GEOMETRY, _COLOUR, _BACKGROUND, _BG_NOISE = 1, 2, 3, 4


class PartsDataset(Dataset):
    """Part-composed objects with per-pixel part masks.

    images: (N, 3, H, W) float32 in [0, 1]; labels: (N,) int64 indices into class_names;
    part_masks: (N, H, W) int64, 0 = background, k in 1..K = part_names[k];
    background_class: (N,) int64, the class whose background pattern the image shows, -1
    for a random background. ``ds[i]`` is (image, label, part_mask); tensors are stored as
    given (no copy).
    """

    class_names: tuple[str, ...] = PART_CLASS_NAMES
    part_names: tuple[str, ...] = PART_NAMES
    class_parts: tuple[tuple[int, ...], ...] = CLASS_PARTS
    num_parts: int = len(PART_NAMES) - 1

    def __init__(self, images: Tensor, labels: Tensor, part_masks: Tensor,
                 background_class: Tensor):
        n = images.shape[0]
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (N, 3, H, W), got {tuple(images.shape)}")
        if tuple(part_masks.shape) != (n,) + tuple(images.shape[2:]):
            raise ValueError(f"part_masks must be ({n}, H, W) like images, "
                             f"got {tuple(part_masks.shape)}")
        for name, t in (("labels", labels), ("background_class", background_class)):
            if tuple(t.shape) != (n,):
                raise ValueError(f"{name} must be ({n},), got {tuple(t.shape)}")
        self.images = images
        self.labels = labels
        self.part_masks = part_masks
        self.background_class = background_class

    @classmethod
    def class_part_matrix(cls) -> Tensor:
        """(num_classes, K + 1) bool: [c, k] is True when class c is built with part id k
        (column 0, background, is False): the fixed part -> class map of a pixel-count head."""
        m = torch.zeros(len(cls.class_names), cls.num_parts + 1, dtype=torch.bool)
        for c, ids in enumerate(cls.class_parts):
            m[c, list(ids)] = True
        return m

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index):
        return self.images[index], self.labels[index], self.part_masks[index]

    def __repr__(self) -> str:
        return f"PartsDataset(n={len(self)}, image_size={self.images.shape[-1]})"


def _part_sd(prim: str, u: Tensor, v: Tensor, sizes) -> Tensor:
    """Signed distance in the part's own frame (centred, unrotated, unscaled)."""
    if prim == "ellipse":
        return R.sd_ellipse(u, v, sizes[0], sizes[1])
    if prim == "box":
        return R.sd_box(u, v, sizes[0], sizes[1], sizes[2])
    if prim == "tri":
        return R.sd_triangle(u, v, *sizes)
    raise AssertionError(prim)  # pragma: no cover


def _draw_params(n: int, keys: tuple[int, ...], spurious: float, mismatch: bool):
    c, k = len(PART_CLASS_NAMES), len(PART_NAMES) - 1
    g = R.generator(*keys, _GEOMETRY)
    p = {"labels": R.balanced_labels(g, n, c)}
    p["scale"] = R.uniform(g, n, 0.6, 0.9)
    room = 0.97 - p["scale"]
    p["cx"] = R.uniform(g, n, -1.0, 1.0) * room
    p["cy"] = R.uniform(g, n, -1.0, 1.0) * room
    p["rot"] = R.uniform(g, n, -math.pi / 15, math.pi / 15)
    p["flip"] = torch.rand(n, generator=g) < 0.5
    # Per part instance: centre shift (object units) and size factor.
    p["shift"] = torch.rand(n, _MAX_INSTANCES, 2, generator=g).mul_(0.1).sub_(0.05)
    p["size"] = torch.rand(n, _MAX_INSTANCES, generator=g).mul_(0.24).add_(0.88)

    g = R.generator(*keys, _COLOUR)
    # Per part id (column k-1 for mask id k): a saturated colour and a faint stripe shading.
    p["part_rgb"] = R.hsv_to_rgb(torch.rand(n, k, generator=g),
                                 torch.rand(n, k, generator=g).mul_(0.4).add_(0.6),
                                 torch.rand(n, k, generator=g).mul_(0.4).add_(0.6))
    p["shade_amp"] = torch.rand(n, k, generator=g).mul_(0.25)
    p["shade_angle"] = torch.rand(n, k, generator=g).mul_(math.pi)
    p["shade_period"] = torch.rand(n, k, generator=g).mul_(0.15).add_(0.12)
    p["shade_phase"] = torch.rand(n, k, generator=g)

    g = R.generator(*keys, _BACKGROUND)
    tied = torch.rand(n, generator=g) < spurious
    other = torch.remainder(p["labels"] + torch.randint(1, c, (n,), generator=g), c)
    bg_class = other if mismatch else p["labels"]
    p["background_class"] = torch.where(tied, bg_class, torch.full_like(bg_class, -1))
    b = {}
    b["angle"] = R.uniform(g, n, -math.pi / 8, math.pi / 8)  # class patterns stay recognisable
    b["period"] = R.uniform(g, n, 0.2, 0.3)
    b["phase1"] = R.uniform(g, n, 0.0, 1.0)
    b["phase2"] = R.uniform(g, n, 0.0, 1.0)
    b["cx"] = R.uniform(g, n, -0.6, 0.6)
    b["cy"] = R.uniform(g, n, -0.6, 0.6)
    b["hue_jitter"] = R.uniform(g, n, -0.04, 0.04)
    b["rand_hue"] = R.uniform(g, n, 0.0, 1.0)
    b["sat"] = R.uniform(g, n, 0.1, 0.28)
    b["v0"] = R.uniform(g, n, 0.25, 0.42)
    b["v1"] = R.uniform(g, n, 0.55, 0.72)
    p["bg"] = b
    return p


def make_parts(n: int, *, split: str = "train", image_size: int = 64, seed: int = 0,
               spurious: float = 0.0, mismatch: bool = False) -> PartsDataset:
    """Generate n part-composed objects (see the module docstring for classes and parts).

    n >= 1; split: 'train' | 'val' | 'test' (keyed into the seed: independent images);
    image_size >= 32 (side in pixels); seed: any int; spurious in [0, 1]: the probability
    that an image's background is its class's pattern (else a random background, tied to
    no class); mismatch: when True the tied background is that of another class, drawn at
    random (a spurious-conflict test set).

    Returns a PartsDataset: images (n, 3, S, S) float32 in [0, 1], labels (n,) int64 in
    0..4 (balanced: each class n // 5 or n // 5 + 1 times), part_masks (n, S, S) int64 in
    0..6, background_class (n,) int64 (-1 = random background). Same arguments, same
    tensors, on every machine.
    """
    R.check_int("n", n, 1)
    split_id = R.check_choice("split", split, R.SPLITS)
    R.check_int("image_size", image_size, 32)
    R.check_seed(seed)
    require_real(spurious, "spurious", low=0, high=1)
    require_bool(mismatch, "mismatch")

    keys = (R.TAG_PARTS, seed, split_id)
    p = _draw_params(n, keys, float(spurious), mismatch)
    size = image_size
    labels, bg_class = p["labels"], p["background_class"]
    images = torch.empty(n, 3, size, size)
    masks = torch.zeros(n, size, size, dtype=torch.int64)
    x, y = R.pixel_grid(size)
    b = p["bg"]
    for lo, hi in R.chunks(n, size):
        idx = torch.arange(lo, hi)
        m = hi - lo
        img = torch.empty(m, 3, size, size)

        # Backgrounds: a class pattern (one class at a time) or smooth random blotches.
        bc = bg_class[lo:hi]
        for cls in range(-1, len(PART_CLASS_NAMES)):
            sel = (bc == cls).nonzero().flatten()
            if sel.numel() == 0:
                continue
            gi = idx[sel]
            if cls < 0:
                t = R.smooth_noise(keys + (_BG_NOISE,), gi, size, 5)
                hue = b["rand_hue"][gi]
            else:
                pk = {name: b[name][gi] for name in
                      ("angle", "period", "phase1", "phase2", "cx", "cy")}
                t = _texture(_BG_PATTERNS[cls], x, y, pk, gi, (), size)
                hue = _BG_HUES[cls] + b["hue_jitter"][gi]
            c0 = R.hsv_to_rgb(hue, b["sat"][gi], b["v0"][gi])[:, :, None, None]
            c1 = R.hsv_to_rgb(hue, b["sat"][gi], b["v1"][gi])[:, :, None, None]
            img[sel] = c0 + (c1 - c0) * t.unsqueeze(1)

        # Objects: one class at a time, its part instances in drawing order.
        lab = labels[lo:hi]
        for cls, name in enumerate(PART_CLASS_NAMES):
            sel = (lab == cls).nonzero().flatten()
            if sel.numel() == 0:
                continue
            gi = idx[sel]
            oscale = p["scale"][gi]
            ou, ov = R.to_local(x, y, p["cx"][gi], p["cy"][gi], p["rot"][gi], oscale,
                                p["flip"][gi])
            sub_img, sub_mask = img[sel], masks[lo + sel]
            for j, (part, prim, pcx, pcy, angle, sizes) in enumerate(_LAYOUTS[name]):
                pid = _P[part]
                f = p["size"][gi, j]
                a = torch.full_like(f, math.radians(angle))
                u, v = R.to_local(ou, ov, pcx + p["shift"][gi, j, 0], pcy + p["shift"][gi, j, 1],
                                  a, f)
                sd = _part_sd(prim, u, v, sizes) * (f * oscale).view(-1, 1, 1)  # image units
                cov = R.coverage(sd, size / 2.0).unsqueeze(1)
                # The part's colour with a faint stripe shading in image coordinates.
                sa = p["shade_angle"][gi, pid - 1].view(-1, 1, 1)
                s = (torch.cos(sa) * x + torch.sin(sa) * y) / p["shade_period"][gi, pid - 1] \
                    .view(-1, 1, 1) + p["shade_phase"][gi, pid - 1].view(-1, 1, 1)
                shade = 1.0 - p["shade_amp"][gi, pid - 1].view(-1, 1, 1) \
                    * (0.5 + 0.5 * torch.sin(2.0 * math.pi * s))
                colour = p["part_rgb"][gi, pid - 1][:, :, None, None] * shade.unsqueeze(1)
                sub_img += (colour - sub_img) * cov
                sub_mask[sd < 0] = pid
            img[sel] = sub_img
            masks[lo + sel] = sub_mask
        images[lo:hi] = img.clamp_(0.0, 1.0)

    return PartsDataset(images, labels, masks, bg_class)
