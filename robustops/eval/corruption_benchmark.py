"""Accuracy under common corruptions, mCE and relative mCE, on the fly or from -C folders.

On the fly, each batch is corrupted on the model's device with
`robustops.eval.corruptions.corrupt`, keyed by (seed, corruption, severity,
global sample index): the numbers do not depend on the batch size. For the
released benchmarks, `load_cifar10_c` reads CIFAR-10-C's .npy files and
`imagenet_c_folder` an ImageNet-C directory tree.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from .corruptions import CORRUPTIONS, SEVERITIES, corrupt, corruption_sources
from .dataset_batches import iterate_batches


@dataclasses.dataclass
class CorruptionAccuracy:
    """clean: accuracy on clean data; accuracy[name][s - 1]: accuracy at severity s (in [0, 1]);
    n: number of images; sources: {corruption: source of its images} (frost's photographs
    or stand-in, from corruptions.corruption_sources) for reports to state."""

    clean: float
    accuracy: Dict[str, List[float]]
    n: int
    sources: Dict[str, str] = dataclasses.field(default_factory=dict)

    def mean(self) -> float:
        """Mean accuracy over all corruptions and severities."""
        vals = [a for v in self.accuracy.values() for a in v]
        return sum(vals) / len(vals)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@torch.no_grad()
def corruption_accuracy(model: nn.Module, data, *, corruptions: Sequence[str] = CORRUPTIONS,
                        severities: Sequence[int] = SEVERITIES, seed: int = 0,
                        batch_size: int = 256, progress: bool = True,
                        max_samples: Optional[int] = None, image_key: Optional[str] = None,
                        label_key: Optional[str] = None) -> CorruptionAccuracy:
    """Accuracy of `model` on every (corruption, severity) of `data`.

    data: (x (N, C, H, W) in [0, 1], y (N,)) tensors, a Dataset or an iterable of batches
    (dict samples or batches are read at image_key / label_key).
    """
    unknown = [c for c in corruptions if c not in CORRUPTIONS]
    if unknown:
        raise ValueError(f"unknown corruptions {unknown}; available: {', '.join(CORRUPTIONS)}")
    bad = [s for s in severities if s not in SEVERITIES]
    if bad:
        raise ValueError(f"severities must be in 1..5, got {bad}")
    sources = corruption_sources(corruptions)  # before any work: frost may be unavailable
    was_training = model.training
    model.eval()
    device = next(iter(model.parameters())).device
    correct = {c: [0] * len(severities) for c in corruptions}
    clean = n = 0
    bar = None
    if progress:
        from ..progress import progress as progress_report
        bar = progress_report(desc="corruptions", unit="img", total=max_samples)
    try:
        for x, y in iterate_batches(data, batch_size, max_samples, image_key=image_key,
                                    label_key=label_key):
            x, y = x.to(device), y.to(device)
            clean += int((model(x).argmax(1) == y).sum())
            for c in corruptions:
                for j, s in enumerate(severities):
                    xc = corrupt(x, c, s, seed=seed, index=n)
                    correct[c][j] += int((model(xc).argmax(1) == y).sum())
            n += x.shape[0]
            if bar is not None:
                bar.update(x.shape[0])
    finally:
        if bar is not None:
            bar.close()
        model.train(was_training)
    if n == 0:
        raise ValueError("data yielded no samples")
    return CorruptionAccuracy(clean=clean / n, n=n, sources=sources,
                              accuracy={c: [k / n for k in v] for c, v in correct.items()})


def mce(result: CorruptionAccuracy, baseline: CorruptionAccuracy) -> Tuple[float, Dict[str, float]]:
    """(mCE, per-corruption CE): CE_c = sum_s err_c,s / sum_s err^base_c,s, mCE = mean_c CE_c."""
    ce = {}
    for c, acc in result.accuracy.items():
        if c not in baseline.accuracy:
            raise ValueError(f"baseline has no results for {c!r}")
        base_err = sum(1 - a for a in baseline.accuracy[c])
        if base_err <= 0:
            raise ValueError(f"baseline makes no error on {c!r}: CE undefined")
        ce[c] = sum(1 - a for a in acc) / base_err
    return sum(ce.values()) / len(ce), ce


def relative_mce(result: CorruptionAccuracy, baseline: CorruptionAccuracy
                 ) -> Tuple[float, Dict[str, float]]:
    """(relative mCE, per corruption): errors measured above each model's clean error."""
    rce = {}
    for c, acc in result.accuracy.items():
        base = sum((1 - a) - (1 - baseline.clean) for a in baseline.accuracy[c])
        if base <= 0:
            raise ValueError(f"baseline's error on {c!r} does not exceed its clean error")
        rce[c] = sum((1 - a) - (1 - result.clean) for a in acc) / base
    return sum(rce.values()) / len(rce), rce


def load_cifar10_c(root: os.PathLike, corruption: str, severity: int) -> Tuple[Tensor, Tensor]:
    """CIFAR-10-C (Hendrycks & Dietterich): root/<corruption>.npy (5 x 10,000 images, severities
    stacked) and root/labels.npy -> x (10000, 3, 32, 32) float in [0, 1], y (10000,)."""
    import numpy as np

    root = pathlib.Path(root)
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be in 1..5, got {severity}")
    path, lpath = root / f"{corruption}.npy", root / "labels.npy"
    for p in (path, lpath):
        if not p.exists():
            raise FileNotFoundError(f"{p} not found (expected the CIFAR-10-C .npy layout)")
    try:
        arr = np.load(path, mmap_mode="r")
        labels = np.load(lpath, mmap_mode="r")
    except ValueError as exc:
        raise ValueError(f"{path} is not a readable .npy file ({exc})") from exc
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.shape[0] % 5 or arr.dtype != np.uint8:
        raise ValueError(f"{path}: expected uint8 (5*N, H, W, 3), got {arr.dtype} {arr.shape}")
    per = arr.shape[0] // 5
    if labels.shape[0] not in (per, 5 * per):
        raise ValueError(f"{lpath}: {labels.shape[0]} labels for {per} images per severity")
    sl = slice((severity - 1) * per, severity * per)
    x = torch.from_numpy(np.ascontiguousarray(arr[sl])).permute(0, 3, 1, 2).float() / 255
    y = torch.from_numpy(np.asarray(labels[sl] if labels.shape[0] == 5 * per else labels)).long()
    return x, y


def imagenet_c_folder(root: os.PathLike, corruption: str, severity: int,
                      image_size: Optional[int] = 224, transform=None):
    """An ImageFolderDataset over root/<corruption>/<severity>/<class>/*.JPEG (ImageNet-C
    layout); images resized to image_size (None keeps their size)."""
    from ..data.folders import ImageFolderDataset

    path = pathlib.Path(root) / corruption / str(severity)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} not found (expected root/<corruption>/<severity>/<class>/)")
    return ImageFolderDataset(path, image_size=image_size, transform=transform)
