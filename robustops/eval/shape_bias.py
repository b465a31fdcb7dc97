"""Shape bias on cue-conflict images (Geirhos et al., 2019).

Each cue-conflict image has a shape label and a texture label. Images whose
shape equals their texture are dropped; of the remaining decisions that are
either the shape or the texture category, the shape bias is the fraction that
follow the shape: #(pred = shape) / (#(pred = shape) + #(pred = texture)).

For 1000-class ImageNet models the 16 categories are read off the logits by
averaging the softmax probabilities of the ImageNet classes of each category
(the indices follow Geirhos et al.'s WordNet-ID lists).
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import re
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

# 16 categories of the cue-conflict stimuli, in the order of the original code.
CATEGORIES_16 = ("knife", "keyboard", "elephant", "bicycle", "airplane", "clock", "oven", "chair",
                 "bear", "boat", "cat", "bottle", "truck", "car", "bird", "dog")

IMAGENET_16: Dict[str, List[int]] = {
    "knife": [499],
    "keyboard": [508, 878],
    "elephant": [385, 386],
    "bicycle": [444, 671],
    "airplane": [404],
    "clock": [409, 530, 892],
    "oven": [766],
    "chair": [423, 559, 765, 857],
    "bear": [294, 295, 296, 297],
    "boat": [472, 554, 625, 814, 914],
    "cat": [281, 282, 283, 284, 285, 286],
    "bottle": [440, 720, 737, 898, 899, 901, 907],
    "truck": [555, 569, 656, 675, 717, 734, 864, 867],
    "car": [436, 511, 817],
    "bird": [8] + list(range(10, 17)) + [18, 19, 20, 22, 23, 24] + [80, 81, 82, 83]
            + list(range(87, 97)) + [98, 99, 100] + list(range(127, 134)) + list(range(135, 146)),
    "dog": list(range(152, 192)) + list(range(193, 227)) + list(range(228, 254)),
}


def imagenet_to_16(logits: Tensor, aggregate: str = "mean") -> Tensor:
    """(B, 1000) ImageNet logits -> (B, 16) category scores (mean softmax probability)."""
    if logits.ndim != 2 or logits.shape[1] != 1000:
        raise ValueError(f"expected (B, 1000) ImageNet logits, got {tuple(logits.shape)}")
    if aggregate not in ("mean", "sum", "max"):
        raise ValueError(f"aggregate must be mean, sum or max, got {aggregate!r}")
    p = logits.float().softmax(1)
    cols = []
    for cat in CATEGORIES_16:
        sub = p[:, IMAGENET_16[cat]]
        cols.append(sub.mean(1) if aggregate == "mean" else sub.sum(1) if aggregate == "sum"
                    else sub.amax(1))
    return torch.stack(cols, 1)


@dataclasses.dataclass
class ShapeBias:
    """shape_bias in [0, 1] (NaN if no decision went to shape or texture); fractions over the
    images used; per_category: shape bias by shape category (NaN where undefined)."""

    shape_bias: float
    shape_fraction: float
    texture_fraction: float
    n_used: int
    n_dropped: int
    per_category: Dict[str, float]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def shape_bias(pred: Tensor, shape_labels: Tensor, texture_labels: Tensor,
               categories: Optional[Sequence[str]] = None) -> ShapeBias:
    """Shape bias of predictions pred (N,) given shape and texture labels (N,) (int)."""
    if not (pred.shape == shape_labels.shape == texture_labels.shape) or pred.ndim != 1:
        raise ValueError("pred, shape_labels and texture_labels must be (N,) tensors of one length")
    keep = shape_labels != texture_labels
    p, s, t = pred[keep], shape_labels[keep], texture_labels[keep]
    n = int(keep.sum())
    if n == 0:
        raise ValueError("no cue-conflict image left: every image has shape == texture")
    hit_s, hit_t = p == s, p == t
    ns, nt = int(hit_s.sum()), int(hit_t.sum())
    k = int(torch.maximum(shape_labels.max(), texture_labels.max())) + 1
    names = list(categories) if categories is not None else [str(i) for i in range(k)]
    per = {}
    for c, name in enumerate(names):
        m = s == c
        cs, ct = int((hit_s & m).sum()), int((hit_t & m).sum())
        per[name] = cs / (cs + ct) if cs + ct else float("nan")
    return ShapeBias(shape_bias=ns / (ns + nt) if ns + nt else float("nan"),
                     shape_fraction=ns / n, texture_fraction=nt / n, n_used=n,
                     n_dropped=int((~keep).sum()), per_category=per)


@torch.no_grad()
def evaluate_shape_bias(model: nn.Module, images: Tensor, shape_labels: Tensor,
                        texture_labels: Tensor, *, imagenet_logits: bool = False,
                        categories: Optional[Sequence[str]] = None,
                        batch_size: int = 256) -> ShapeBias:
    """Shape bias of `model` on cue-conflict images (N, C, H, W) in [0, 1].

    imagenet_logits: the model outputs 1000 ImageNet logits, mapped to the 16
    categories (then labels index CATEGORIES_16). Usable during training: pass
    the embedded `shapes` dataset's cue-conflict split.
    """
    was_training = model.training
    model.eval()
    try:
        device = next(iter(model.parameters())).device
        preds = []
        for i in range(0, images.shape[0], batch_size):
            out = model(images[i:i + batch_size].to(device))
            if imagenet_logits:
                out = imagenet_to_16(out)
                categories = categories or CATEGORIES_16
            preds.append(out.argmax(1).cpu())
    finally:
        model.train(was_training)
    return shape_bias(torch.cat(preds), shape_labels.cpu(), texture_labels.cpu(), categories)


_NAME = re.compile(r"^([a-z]+)\d+-([a-z]+)\d+\.(png|jpe?g)$", re.IGNORECASE)


def load_cue_conflict_folder(root: os.PathLike, image_size: Optional[int] = 224
                             ) -> Tuple[Tensor, Tensor, Tensor, Tuple[str, ...]]:
    """Read a cue-conflict folder (root/<shape category>/<shape>N-<texture>M.png, as in
    Geirhos et al.'s release) -> images (N, 3, S, S) in [0, 1], shape labels, texture
    labels (indices into CATEGORIES_16), and the categories."""
    from ..data.folders import read_image

    root = pathlib.Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"cue-conflict folder {root} does not exist")
    index = {c: i for i, c in enumerate(CATEGORIES_16)}
    imgs, shapes_, textures = [], [], []
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        m = _NAME.match(path.name)
        if not m:
            continue
        shape, texture = m.group(1).lower(), m.group(2).lower()
        if shape not in index or texture not in index:
            raise ValueError(f"{path}: categories {shape!r}/{texture!r} are not among the 16 "
                             f"({', '.join(CATEGORIES_16)})")
        imgs.append(read_image(path, image_size))
        shapes_.append(index[shape])
        textures.append(index[texture])
    if not imgs:
        raise ValueError(f"no '<shape>N-<texture>M.png' images found under {root}")
    return (torch.stack(imgs), torch.tensor(shapes_), torch.tensor(textures), CATEGORIES_16)
