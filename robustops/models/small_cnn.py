"""Small CNNs for 28-pixel (MNIST-like) and 32-pixel (CIFAR-like) images.

The layout follows the ``SmallCNN`` of the TRADES paper (Zhang et al., 2019),
the usual MNIST model of adversarial-robustness benchmarks: four unpadded 3x3
convolutions in two pooled blocks, then an MLP head. The convolutions stay
unpadded (as in TRADES) because the smaller maps are cheaper, and attack loops
call the model many times: a forward + backward of 128 CIFAR images measured
~75-105 ms on two CPU cores, ~120-140 ms with padding.
"""
from __future__ import annotations

import torch
from torch import nn

from ..arguments import require_int

# Below this side length the two (unpadded conv, conv, pool) blocks leave no pixels.
MIN_IMAGE_SIZE = 16


def _require_positive(**values: int) -> None:
    """Raise a TypeError (not an int) or ValueError (< 1) naming the first bad argument."""
    for name, value in values.items():
        require_int(value, name, minimum=1, what="an integer >= 1")


def _feature_side(image_size: int) -> int:
    """Side of the feature map after the conv blocks: each 3x3 conv trims 2 pixels."""
    side = (image_size - 4) // 2
    return (side - 4) // 2


class SmallCNN(nn.Module):
    """Four-conv, two-pool CNN returning logits for small square images.

    Args:
        in_channels: image channels (1 for MNIST, 3 for CIFAR).
        num_classes: number of logits.
        image_size: side of the square input; the head's input size follows from it.
        width: channels of the first block; the second block has ``2 * width``.
        hidden: units of the head's hidden layer.

    Shapes:
        x: (B, in_channels, image_size, image_size) float in [0, 1] -> (B, num_classes) logits.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28,
                 width: int = 32, hidden: int = 256) -> None:
        super().__init__()
        _require_positive(in_channels=in_channels, num_classes=num_classes,
                          image_size=image_size, width=width, hidden=hidden)
        if image_size < MIN_IMAGE_SIZE:
            raise ValueError(f"image_size must be >= {MIN_IMAGE_SIZE}, got {image_size}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.image_size = image_size
        side = _feature_side(image_size)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3), nn.ReLU(inplace=True),
            nn.Conv2d(2 * width, 2 * width, 3), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(2 * width * side * side, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) float in [0, 1] -> (B, num_classes) logits."""
        # The head's input size is fixed by image_size; fail here with the sizes
        # rather than with an opaque matmul shape error in the first Linear.
        if x.dim() != 4 or x.shape[1] != self.in_channels \
                or x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"SmallCNN expects (B, {self.in_channels}, {self.image_size}, "
                f"{self.image_size}) inputs, got {tuple(x.shape)}")
        return self.classifier(self.features(x))


def small_cnn_mnist(num_classes: int = 10) -> SmallCNN:
    """SmallCNN for 1x28x28 images (MNIST-like)."""
    return SmallCNN(in_channels=1, num_classes=num_classes, image_size=28, hidden=128)


def small_cnn_cifar(num_classes: int = 10) -> SmallCNN:
    """SmallCNN for 3x32x32 images (CIFAR-like)."""
    # width stays 32: width 64 measured ~4x slower here (~100 -> ~440 ms per
    # forward + backward of 128 images on 2 cores), too slow for attack loops.
    return SmallCNN(in_channels=3, num_classes=num_classes, image_size=32, hidden=256)
