"""``shapes``: generated shape x texture images, with cue-conflict test sets.

Each image shows one of 8 shapes (a signed-distance silhouette with random position,
scale and rotation) filled with one of 8 procedural textures (random angle, period,
phase and colours), on a smooth, class-independent, low-saturation background. The
shape is the object's class; the texture is a second, separable cue, which is what
the shape-bias measurements of METHODS.md section 4 need:

- ``'consistent'``: texture class == shape class (the training set: both cues agree);
- ``'cue_conflict'``: texture class != shape class, both labels kept; the pairs are
  balanced: each shape class meets each other texture class equally often (to within one);
- ``'silhouette'``: the shape alone, one flat colour on a plain background (texture label -1);
- ``'texture'``: the texture alone over the whole image, no shape (shape label -1).

Everything is drawn from generators keyed by (seed, split), never the global RNG,
so a seed names the same images on every machine; the splits 'train', 'val' and
'test' of one seed are independent draws. Within one (seed, split), shape geometry and
texture parameters do not depend on the mode: the 'silhouette' images are the
silhouettes of the 'consistent' and 'cue_conflict' images (same shape, pose and
mask), and the 'texture' images are the uncut textures that fill the 'consistent'
shapes. Rendering is vectorised over images (a loop over classes and over chunks of
images, which bounds memory and never changes the result).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.utils.data import Dataset

from . import _render as R

__all__ = ["ShapesDataset", "make_shapes", "SHAPE_NAMES", "TEXTURE_NAMES", "SHAPE_MODES"]

SHAPE_NAMES = ("circle", "square", "triangle", "star", "cross", "heart", "ring", "ellipse")
TEXTURE_NAMES = ("stripes", "checkerboard", "dots", "waves", "grain", "rings", "grid", "zigzag")
SHAPE_MODES = ("consistent", "cue_conflict", "silhouette", "texture")
_TARGETS = ("shape", "texture")

# Random streams: one generator per stream, so adding a draw to one leaves the others as they are.
_GEOMETRY, _TEXTURE, _PAIRING, _GRAIN = 1, 2, 3, 4


class ShapesDataset(Dataset):
    """Shape x texture images with both labels and the shape's pixel mask.

    images: (N, 3, H, W) float32 in [0, 1]; shape_labels, texture_labels: (N,) int64
    (indices into class_names / texture_names, -1 where the mode has no shape or no
    texture); shape_mask: (N, 1, H, W) bool, True on pixels whose centre lies inside
    the shape (all False in 'texture' mode). ``ds[i]`` is (image, label) with the shape
    label by default, the texture label when target='texture'; the tensors are stored
    as given (no copy).
    """

    class_names: tuple[str, ...] = SHAPE_NAMES
    texture_names: tuple[str, ...] = TEXTURE_NAMES

    def __init__(self, images: Tensor, shape_labels: Tensor, texture_labels: Tensor,
                 shape_mask: Tensor, *, mode: str = "consistent", target: str | None = None):
        R.check_choice("mode", mode, SHAPE_MODES)
        n = images.shape[0]
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (N, 3, H, W), got {tuple(images.shape)}")
        for name, t in (("shape_labels", shape_labels), ("texture_labels", texture_labels)):
            if tuple(t.shape) != (n,):
                raise ValueError(f"{name} must be ({n},), got {tuple(t.shape)}")
        if tuple(shape_mask.shape) != (n, 1) + tuple(images.shape[2:]):
            raise ValueError(f"shape_mask must be ({n}, 1, H, W) like images, "
                             f"got {tuple(shape_mask.shape)}")
        self.images = images
        self.shape_labels = shape_labels
        self.texture_labels = texture_labels
        self.shape_mask = shape_mask
        self.mode = mode
        self.target = target if target is not None else ("texture" if mode == "texture"
                                                         else "shape")

    @property
    def target(self) -> str:
        """Which label ``__getitem__`` returns: 'shape' or 'texture'."""
        return self._target

    @target.setter
    def target(self, value: str) -> None:
        R.check_choice("target", value, _TARGETS)
        if (value == "shape" and self.mode == "texture") or \
                (value == "texture" and self.mode == "silhouette"):
            other = "texture" if value == "shape" else "shape"
            raise ValueError(f"mode {self.mode!r} images have no {value} label (it is -1); "
                             f"use target={other!r}")
        self._target = value

    @property
    def labels(self) -> Tensor:
        """(N,) int64: the labels ``__getitem__`` returns (shape or texture, per target)."""
        return self.shape_labels if self._target == "shape" else self.texture_labels

    @property
    def texture_mask(self) -> Tensor:
        """(N, 1, H, W) bool: pixels showing the texture (the whole image in 'texture'
        mode, none in 'silhouette' mode, the shape otherwise): a texture concept mask."""
        if self.mode == "texture":
            return torch.ones_like(self.shape_mask)
        if self.mode == "silhouette":
            return torch.zeros_like(self.shape_mask)
        return self.shape_mask

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index):
        return self.images[index], self.labels[index]

    def __repr__(self) -> str:
        return (f"ShapesDataset(n={len(self)}, image_size={self.images.shape[-1]}, "
                f"mode={self.mode!r}, target={self._target!r})")


# ----------------------------------------------------------------------------- shapes


def _shape_sd(k: int, u: Tensor, v: Tensor) -> Tensor:
    """Signed distance (canonical units) to shape class k, which fits in the unit disc."""
    name = SHAPE_NAMES[k]
    if name == "circle":
        return R.sd_circle(u, v, 0.8)
    if name == "square":
        return R.sd_box(u, v, 0.68, 0.68, 0.05)
    if name == "triangle":
        r = 1.0
        return R.sd_triangle(u, v, (0.0, r), (-r * math.sqrt(3) / 2, -r / 2),
                             (r * math.sqrt(3) / 2, -r / 2))
    if name == "star":
        return R.sd_star(u, v, 1.0, 5, 3.0)
    if name == "cross":
        return torch.minimum(R.sd_box(u, v, 0.92, 0.3), R.sd_box(u, v, 0.3, 0.92))
    if name == "heart":
        s = 1.48
        return R.sd_heart(u / s, v / s + 0.55) * s
    if name == "ring":
        return (torch.sqrt(u * u + v * v) - 0.66).abs() - 0.24
    if name == "ellipse":
        return R.sd_ellipse(u, v, 0.98, 0.5)
    raise AssertionError(name)  # pragma: no cover


# ----------------------------------------------------------------------------- textures


def _sharpen(s: Tensor, gain: float) -> Tensor:
    """Map a pattern in [-1, 1] to [0, 1], clipped by gain (large gain: two-tone, hard edges)."""
    return (0.5 + 0.5 * gain * s).clamp_(0.0, 1.0)


def _texture(k: int, x: Tensor, y: Tensor, p: dict[str, Tensor], index: Tensor,
             grain_keys: tuple[int, ...], size: int) -> Tensor:
    """(m, H, W) texture intensity in [0, 1] for texture class k; p holds (m,) parameters."""
    name = TEXTURE_NAMES[k]
    col = lambda t: t.view(-1, 1, 1)  # noqa: E731
    if name == "grain":
        # Per-pixel binary-ish noise at 32 px; blocks of ~size/32 pixels at larger sizes so
        # the grain keeps its look relative to the shape.
        block = max(1, round(size / 32))
        cells = -(-size // block)
        noise = R.pixel_noise(grain_keys, index, cells)
        noise = noise.repeat_interleave(block, 1).repeat_interleave(block, 2)[:, :size, :size]
        return _sharpen(noise * 2.0 - 1.0, 2.0)
    c, s = torch.cos(col(p["angle"])), torch.sin(col(p["angle"]))
    period = col(p["period"])
    u = (c * x + s * y) / period + col(p["phase1"])
    v = (-s * x + c * y) / period + col(p["phase2"])
    tau = 2.0 * math.pi
    if name == "stripes":
        return _sharpen(torch.sin(tau * u), 2.5)
    if name == "checkerboard":
        return _sharpen(torch.sin(tau * u) * torch.sin(tau * v), 4.0)
    if name == "dots":
        du, dv = torch.remainder(u, 1.0) - 0.5, torch.remainder(v, 1.0) - 0.5
        return _sharpen((0.3 - torch.sqrt(du * du + dv * dv)) * 12.0, 1.0)
    if name == "waves":
        return _sharpen(torch.sin(tau * (u + 0.45 * torch.sin(tau * v / 2.5))), 2.5)
    if name == "rings":
        r = torch.sqrt((x - col(p["cx"])) ** 2 + (y - col(p["cy"])) ** 2) / period
        return _sharpen(torch.sin(tau * (r + col(p["phase1"]))), 2.5)
    if name == "grid":
        lu = (torch.remainder(u / 1.3, 1.0) - 0.5).abs()
        lv = (torch.remainder(v / 1.3, 1.0) - 0.5).abs()
        return _sharpen((torch.maximum(lu, lv) - 0.36) * 16.0, 1.0)
    if name == "zigzag":
        tri = (torch.remainder(v / 1.2, 1.0) - 0.5).abs() * 2.0  # triangle wave in [0, 1]
        return _sharpen(torch.sin(tau * (u + 0.9 * tri)), 2.5)
    raise AssertionError(name)  # pragma: no cover


# ----------------------------------------------------------------------------- generation


def _draw_params(n: int, keys: tuple[int, ...]) -> dict[str, Tensor]:
    """All per-image random parameters, drawn for every image whatever the mode."""
    g = R.generator(*keys, _GEOMETRY)
    p = {"labels": R.balanced_labels(g, n, len(SHAPE_NAMES))}
    p["rot"] = R.uniform(g, n, -math.pi / 4, math.pi / 4)
    p["scale"] = R.uniform(g, n, 0.5, 0.78)
    room = 0.95 - p["scale"]  # keeps the unit disc (the whole shape) inside the image
    p["cx"] = R.uniform(g, n, -1.0, 1.0) * room
    p["cy"] = R.uniform(g, n, -1.0, 1.0) * room

    g = R.generator(*keys, _TEXTURE)
    t = {}
    t["angle"] = R.uniform(g, n, 0.0, math.pi)
    t["period"] = R.uniform(g, n, 0.28, 0.42)  # 4.5..6.7 px at 32 px (image spans 2 units)
    t["phase1"] = R.uniform(g, n, 0.0, 1.0)
    t["phase2"] = R.uniform(g, n, 0.0, 1.0)
    t["cx"] = R.uniform(g, n, -0.6, 0.6)
    t["cy"] = R.uniform(g, n, -0.6, 0.6)
    # Background: near-grey, either dark or light, a gentle gradient in a random direction.
    light = torch.rand(n, generator=g) < 0.5
    bv = torch.where(light, R.uniform(g, n, 0.8, 0.95), R.uniform(g, n, 0.06, 0.2))
    bh, bs = R.uniform(g, n, 0.0, 1.0), R.uniform(g, n, 0.0, 0.18)
    t["bg0"] = R.hsv_to_rgb(bh, bs, bv)
    t["bg1"] = R.hsv_to_rgb(bh + R.uniform(g, n, -0.08, 0.08), bs,
                            (bv + torch.where(light, -1.0, 1.0) * R.uniform(g, n, 0.0, 0.12)))
    # Two-tone texture colours: a dark and a light shade of nearby saturated hues, both
    # darker than a light background or both lighter than a dark one, so the whole shape
    # stands out from the background (in brightness as well as saturation).
    hue = R.uniform(g, n, 0.0, 1.0)
    v0 = torch.where(light, R.uniform(g, n, 0.12, 0.3), R.uniform(g, n, 0.42, 0.6))
    v1 = torch.where(light, R.uniform(g, n, 0.5, 0.68), R.uniform(g, n, 0.85, 1.0))
    t["c0"] = R.hsv_to_rgb(hue, R.uniform(g, n, 0.55, 1.0), v0)
    t["c1"] = R.hsv_to_rgb(hue + R.uniform(g, n, -0.12, 0.12), R.uniform(g, n, 0.5, 1.0), v1)
    t["bg_dir"] = R.uniform(g, n, 0.0, 2 * math.pi)
    # Silhouette fill: one flat saturated colour whose value is far from the background's.
    t["fill"] = R.hsv_to_rgb(hue, R.uniform(g, n, 0.5, 1.0),
                             torch.where(light, R.uniform(g, n, 0.25, 0.55),
                                         R.uniform(g, n, 0.65, 0.95)))
    p["tex"] = t

    # Cue-conflict pairing: within each shape class the texture offsets 1..C-1 cycle from a
    # random start, so every (shape, other texture) pair is equally frequent (to within one).
    g = R.generator(*keys, _PAIRING)
    c = len(SHAPE_NAMES)
    start = torch.randint(0, c - 1, (c,), generator=g)
    rank = R.rank_within_class(p["labels"])
    p["offset"] = torch.remainder(rank + start[p["labels"]], c - 1) + 1
    return p


def make_shapes(n: int, *, split: str = "train", image_size: int = 32, seed: int = 0,
                mode: str = "consistent", target: str | None = None) -> ShapesDataset:
    """Generate n shape x texture images (see the module docstring for the four modes).

    n >= 1; split: 'train' | 'val' | 'test' (keyed into the seed: independent images);
    image_size >= 16 (side in pixels); seed: any int; mode: 'consistent' | 'cue_conflict' |
    'silhouette' | 'texture'; target: the label ``ds[i]`` returns, 'shape' (default) or
    'texture' (the default in 'texture' mode).

    Returns a ShapesDataset: images (n, 3, S, S) float32 in [0, 1]; shape_labels,
    texture_labels (n,) int64 in 0..7 (-1 where the mode has none); shape_mask
    (n, 1, S, S) bool. Shape labels are balanced (each class n // 8 or n // 8 + 1 times).
    Same arguments, same tensors, on every machine.
    """
    R.check_int("n", n, 1)
    split_id = R.check_choice("split", split, R.SPLITS)
    R.check_int("image_size", image_size, 16)
    R.check_seed(seed)
    mode_id = R.check_choice("mode", mode, SHAPE_MODES)
    if target is not None:
        R.check_choice("target", target, _TARGETS)
    mode = SHAPE_MODES[mode_id]

    keys = (R.TAG_SHAPES, seed, split_id)
    p = _draw_params(n, keys)
    c = len(SHAPE_NAMES)
    labels = p["labels"]
    if mode == "consistent":
        shape_labels, texture_labels = labels, labels.clone()
    elif mode == "cue_conflict":
        shape_labels, texture_labels = labels, torch.remainder(labels + p["offset"], c)
    elif mode == "silhouette":
        shape_labels, texture_labels = labels, torch.full_like(labels, -1)
    else:  # texture
        shape_labels, texture_labels = torch.full_like(labels, -1), labels

    size = image_size
    images = torch.empty(n, 3, size, size)
    masks = torch.zeros(n, 1, size, size, dtype=torch.bool)
    x, y = R.pixel_grid(size)
    tex = p["tex"]
    for lo, hi in R.chunks(n, size):
        idx = torch.arange(lo, hi)
        m = hi - lo
        img = torch.empty(m, 3, size, size)

        # Background (plain in 'silhouette' mode; a gentle gradient otherwise).
        if mode == "silhouette":
            img.copy_(tex["bg0"][lo:hi, :, None, None].expand(m, 3, size, size))
        elif mode != "texture":
            d = tex["bg_dir"][lo:hi].view(-1, 1, 1)
            ramp = ((torch.cos(d) * x + torch.sin(d) * y) * 0.5 + 0.5).unsqueeze(1)
            b0 = tex["bg0"][lo:hi, :, None, None]
            img.copy_(b0 + (tex["bg1"][lo:hi, :, None, None] - b0) * ramp)

        # Texture layer (every mode but 'silhouette'), one class at a time.
        if mode != "silhouette":
            fg = torch.empty(m, 3, size, size)
            tl = texture_labels[lo:hi]
            for k in range(c):
                sel = (tl == k).nonzero().flatten()
                if sel.numel() == 0:
                    continue
                gi = idx[sel]
                pk = {name: tex[name][gi] for name in
                      ("angle", "period", "phase1", "phase2", "cx", "cy")}
                t = _texture(k, x, y, pk, gi, keys + (_GRAIN,), size).unsqueeze(1)
                c0 = tex["c0"][gi, :, None, None]
                fg[sel] = c0 + (tex["c1"][gi, :, None, None] - c0) * t
        else:
            fg = tex["fill"][lo:hi, :, None, None].expand(m, 3, size, size)

        if mode == "texture":
            img = fg
        else:
            # Shape coverage (anti-aliased) and mask, one shape class at a time.
            alpha = torch.zeros(m, 1, size, size)
            sl = shape_labels[lo:hi]
            for k in range(c):
                sel = (sl == k).nonzero().flatten()
                if sel.numel() == 0:
                    continue
                gi = idx[sel]
                sc = p["scale"][gi]
                u, v = R.to_local(x, y, p["cx"][gi], p["cy"][gi], p["rot"][gi], sc)
                sd = _shape_sd(k, u, v) * sc.view(-1, 1, 1)  # image units
                alpha[sel, 0] = R.coverage(sd, size / 2.0)
                masks[lo + sel, 0] = sd < 0
            img = img + (fg - img) * alpha
        images[lo:hi] = img.clamp_(0.0, 1.0)

    return ShapesDataset(images, shape_labels, texture_labels, masks, mode=mode, target=target)
