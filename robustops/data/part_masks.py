"""Images with part masks for semi-supervised part-model training: (x, y, mask) samples.

The has-mask convention (robustops.data.part_targets): a mask is (H, W) int64,
0 = background, 1..K = parts, -1 = unlabelled; an image WITHOUT a mask has -1
everywhere. ``PartSegmentationDataset`` wraps images, labels and masks (e.g. a
``PartsDataset`` via ``from_parts``), keeps the masks of a seeded fraction of the images
(``mask_fraction``; the rest read as all -1), and yields

    packed=False: (x (3, H, W), y (), mask (H, W))
    packed=True:  (x, target (1 + H*W,))   target = [y, mask.flatten()]

The packed form is what the Trainer takes (its batches are (x, y) pairs); the part
objectives (PartSemiSupervised, PartTRADES, PartMAT) unpack it.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..arguments import require_real
from .part_targets import NO_MASK, pack_part_targets

__all__ = ["PartSegmentationDataset"]


class PartSegmentationDataset(Dataset):
    """(x, y, mask) samples with the has-mask convention (see the module docstring).

    images (N, 3, H, W) float; labels (N,) int64; masks (N, H, W) int64 (values -1..K);
    mask_fraction in [0, 1]: the share of images that keep their mask, chosen by a
    generator seeded with ``seed`` (round(mask_fraction * N) images); packed: yield
    (x, packed target) for the Trainer. Tensors are stored as given (no copy).
    """

    def __init__(self, images: Tensor, labels: Tensor, masks: Tensor, *,
                 mask_fraction: float = 1.0, seed: int = 0, packed: bool = False):
        n = images.shape[0]
        if images.ndim != 4:
            raise ValueError(f"images must be (N, C, H, W), got {tuple(images.shape)}")
        if tuple(labels.shape) != (n,):
            raise ValueError(f"labels must be ({n},), got {tuple(labels.shape)}")
        if tuple(masks.shape) != (n,) + tuple(images.shape[2:]):
            raise ValueError(f"masks must be ({n}, H, W) like the images, got "
                             f"{tuple(masks.shape)}")
        if masks.dtype != torch.int64:
            raise ValueError(f"masks must be int64 (-1 unlabelled, 0 background, 1..K), got "
                             f"{masks.dtype}")
        self.images, self.labels, self.masks = images, labels, masks
        self.mask_fraction = require_real(mask_fraction, "mask_fraction", low=0, high=1)
        self.seed, self.packed = seed, bool(packed)
        keep = round(self.mask_fraction * n)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        self.has_mask = torch.zeros(n, dtype=torch.bool)
        self.has_mask[order[:keep]] = True

    @classmethod
    def from_parts(cls, ds, **kwargs) -> "PartSegmentationDataset":
        """From a PartsDataset (images, labels, part_masks); kwargs as the constructor's."""
        return cls(ds.images, ds.labels, ds.part_masks, **kwargs)

    def with_packed(self, packed: bool = True) -> "PartSegmentationDataset":
        """The same samples (same masks kept), yielded packed or not."""
        out = type(self).__new__(type(self))
        out.__dict__.update(self.__dict__)
        out.packed = bool(packed)
        return out

    def mask(self, index: int) -> Tensor:
        """Mask of sample index: its part mask, or all -1 when it has none."""
        m = self.masks[index]
        return m if bool(self.has_mask[index]) else torch.full_like(m, NO_MASK)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index):
        x, y, m = self.images[index], self.labels[index], self.mask(index)
        if self.packed:
            return x, pack_part_targets(y, m)
        return x, y, m

    def __repr__(self) -> str:
        return (f"PartSegmentationDataset(n={len(self)}, with_mask={int(self.has_mask.sum())}, "
                f"packed={self.packed})")
