"""Model zoo: small CNNs and untrained torchvision backbones, by builder or by name.

All models map x: (B, C, H, W) float in [0, 1] to (B, num_classes) logits.
``build_model(name, num_classes, small_input=..., in_channels=...)`` builds any
family in ``MODEL_NAMES``.
"""
from .small_cnn import SmallCNN, small_cnn_cifar, small_cnn_mnist
from .torchvision_backbones import MODEL_NAMES, alexnet, build_model, googlenet, resnet18, resnet50

__all__ = ["SmallCNN", "small_cnn_mnist", "small_cnn_cifar", "alexnet", "googlenet",
           "resnet18", "resnet50", "build_model", "MODEL_NAMES"]
