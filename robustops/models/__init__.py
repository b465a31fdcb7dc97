"""Model zoo: small CNNs and untrained torchvision backbones, by builder or by name.

All models map x: (B, C, H, W) float in [0, 1] to (B, num_classes) logits.
``build_model(name, num_classes, small_input=..., in_channels=...)`` builds any
backbone family in ``MODEL_NAMES``; ``MODEL_FAMILIES`` (models/registry.py) names
every family `robustops train` / `eval` know.
"""
from .small_cnn import SmallCNN, small_cnn_cifar, small_cnn_mnist
from .torchvision_backbones import alexnet, googlenet, resnet18, resnet50
from .part_heads import (BBoxHead, DownsampledHead, PartHead, PixelCountHead, TwoHead,
                         WeightedBBoxHead, build_part_head)
from .part_model import PartModel, build_part_model
from .part_segmenters import (DeepLabV3Segmenter, PartSegmenter, SmallPartSegmenter,
                              build_part_segmenter)
from .resnext import RESNEXT29_CONFIGS, TENET_LAYER, ResNeXt29, resnext29
from .registry import MODEL_FAMILIES, MODEL_NAMES, ModelFamily, build_model, register_model

__all__ = ["SmallCNN", "small_cnn_mnist", "small_cnn_cifar", "alexnet", "googlenet",
           "resnet18", "resnet50", "build_model", "MODEL_NAMES"]
__all__ += ["PartModel", "build_part_model", "PartSegmenter", "SmallPartSegmenter",
            "DeepLabV3Segmenter", "build_part_segmenter", "PartHead", "DownsampledHead",
            "BBoxHead", "WeightedBBoxHead", "TwoHead", "PixelCountHead", "build_part_head"]
__all__ += ["ResNeXt29", "resnext29", "RESNEXT29_CONFIGS", "TENET_LAYER"]
__all__ += ["MODEL_FAMILIES", "ModelFamily", "register_model"]
