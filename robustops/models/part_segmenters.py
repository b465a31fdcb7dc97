"""Part segmenters: images -> per-pixel part logits (METHODS.md section 1).

Every segmenter here follows one interface (``PartSegmenter``):

    logits = seg(x)                                   # (B, K+1, H, W), channel 0 = background
    logits, features = seg(x, return_features=True)   # features (B, seg.feature_channels, h, w)

x is (B, 3, H, W) in [0, 1]; the logits come back at the input's size. ``features``
are the encoder's last feature map (what a two-head model classifies from).

- ``SmallPartSegmenter``: a small U-Net-style encoder-decoder for 32-64 pixel images
  (two stride-2 stages, bilinear upsampling with skip connections).
- ``DeepLabV3Segmenter``: torchvision's DeepLabV3-ResNet-50 architecture (untrained:
  no pretrained weights, nothing is downloaded) for full-size images; output stride 8
  as torchvision builds it, or 16 as the paper (ASPP rates 6, 12, 18).
"""
from __future__ import annotations

from typing import Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..arguments import positive_int

__all__ = ["PartSegmenter", "SmallPartSegmenter", "DeepLabV3Segmenter", "build_part_segmenter",
           "SEGMENTER_NAMES"]


def check_float_images(x, who: str) -> None:
    """A TypeError unless x is a floating tensor: uint8 images (0..255) would be read as
    if in [0, 1] (VOneBlock and the attacks refuse them too)."""
    if isinstance(x, Tensor) and not x.is_floating_point():
        raise TypeError(f"{who}: x must be a floating tensor of images in [0, 1], got "
                        f"{x.dtype} (convert uint8 images with x.float() / 255)")


class PartSegmenter(nn.Module):
    """Base of the part segmenters: num_parts K (logits have K + 1 channels) and the
    channels of the features returned with ``return_features=True``."""

    num_parts: int
    feature_channels: int

    def _check_input(self, x: Tensor) -> None:
        if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != 3:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{type(self).__name__} expects images (B, 3, H, W), got {shape}")
        check_float_images(x, type(self).__name__)

    def forward(self, x: Tensor, return_features: bool = False
                ) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        raise NotImplementedError


def _conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SmallPartSegmenter(PartSegmenter):
    """A small encoder-decoder for 32-64 pixel images.

    Encoder: three stages of two 3x3 conv-BN-ReLU at full, 1/2 and 1/4 resolution
    (width, 2 width, 4 width channels; the downsampling convs have stride 2). Decoder:
    bilinear upsampling to the skip's size, concatenation, one conv-BN-ReLU per stage,
    then a 1x1 conv to K + 1 logits. Any H, W >= 4 work (odd sizes too).

    Shapes: x (B, 3, H, W) in [0, 1] -> logits (B, num_parts + 1, H, W); features
    (B, 4 * width, ceil(H/4), ceil(W/4)). width 16: ~0.1 M parameters.
    """

    def __init__(self, num_parts: int, width: int = 16):
        super().__init__()
        self.num_parts = positive_int(num_parts, "num_parts")
        self.width = positive_int(width, "width")
        w = width
        self.feature_channels = 4 * w
        self.enc1 = nn.Sequential(_conv_bn_relu(3, w), _conv_bn_relu(w, w))
        self.enc2 = nn.Sequential(_conv_bn_relu(w, 2 * w, 2), _conv_bn_relu(2 * w, 2 * w))
        self.enc3 = nn.Sequential(_conv_bn_relu(2 * w, 4 * w, 2), _conv_bn_relu(4 * w, 4 * w))
        self.dec2 = _conv_bn_relu(6 * w, 2 * w)
        self.dec1 = _conv_bn_relu(3 * w, w)
        self.classifier = nn.Conv2d(w, num_parts + 1, 1)

    def forward(self, x: Tensor, return_features: bool = False
                ) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        """x (B, 3, H, W) in [0, 1] -> part logits (B, K+1, H, W) [, features]."""
        self._check_input(x)
        # Centre the inputs: the stem then sees zero-mean values whatever the dataset.
        e1 = self.enc1(x * 2.0 - 1.0)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        d2 = F.interpolate(e3, size=e2.shape[-2:], mode="bilinear", align_corners=False)
        d2 = self.dec2(torch.cat([d2, e2], 1))
        d1 = F.interpolate(d2, size=e1.shape[-2:], mode="bilinear", align_corners=False)
        d1 = self.dec1(torch.cat([d1, e1], 1))
        logits = self.classifier(d1)
        return (logits, e3) if return_features else logits


# torchvision's segmentation models expect ImageNet-normalised inputs.
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class DeepLabV3Segmenter(PartSegmenter):
    """torchvision's DeepLabV3-ResNet-50 (no pretrained weights) as a part segmenter.

    output_stride 8 builds exactly ``torchvision.models.segmentation.deeplabv3_resnet50(
    weights=None, weights_backbone=None, num_classes=K+1, aux_loss=False)``; 16 (the
    paper's) dilates only layer4 and uses ASPP rates (6, 12, 18). The ASPP head's
    output is upsampled bilinearly to the input size, as torchvision does.

    Shapes: x (B, 3, H, W) in [0, 1] (ImageNet-normalised inside) -> logits
    (B, num_parts + 1, H, W); features: the ResNet's last map (B, 2048, H/os, W/os).
    Train-mode batches need B >= 2 (the ASPP pooling branch has a BatchNorm on 1x1 maps).
    """

    def __init__(self, num_parts: int, output_stride: int = 8):
        super().__init__()
        from torchvision.models import resnet50
        from torchvision.models._utils import IntermediateLayerGetter
        from torchvision.models.segmentation import deeplabv3_resnet50
        from torchvision.models.segmentation.deeplabv3 import DeepLabHead

        self.num_parts = positive_int(num_parts, "num_parts")
        if output_stride not in (8, 16):
            raise ValueError(f"output_stride must be 8 or 16, got {output_stride!r}")
        self.output_stride = output_stride
        self.feature_channels = 2048
        if output_stride == 8:
            net = deeplabv3_resnet50(weights=None, weights_backbone=None,
                                     num_classes=num_parts + 1, aux_loss=False)
            self.backbone, self.classifier = net.backbone, net.classifier
        else:
            trunk = resnet50(weights=None, replace_stride_with_dilation=[False, False, True])
            self.backbone = IntermediateLayerGetter(trunk, return_layers={"layer4": "out"})
            self.classifier = DeepLabHead(2048, num_parts + 1, atrous_rates=(6, 12, 18))
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1),
                             persistent=False)

    def forward(self, x: Tensor, return_features: bool = False
                ) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        """x (B, 3, H, W) in [0, 1] -> part logits (B, K+1, H, W) [, features]."""
        self._check_input(x)
        feats = self.backbone((x - self.mean) / self.std)["out"]
        logits = self.classifier(feats)
        logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return (logits, feats) if return_features else logits


SEGMENTER_NAMES: Sequence[str] = ("small", "deeplabv3_resnet50")


def build_part_segmenter(name: str, num_parts: int, **kwargs) -> PartSegmenter:
    """'small' -> SmallPartSegmenter(num_parts, **kwargs); 'deeplabv3_resnet50' ->
    DeepLabV3Segmenter(num_parts, **kwargs)."""
    if name == "small":
        return SmallPartSegmenter(num_parts, **kwargs)
    if name == "deeplabv3_resnet50":
        return DeepLabV3Segmenter(num_parts, **kwargs)
    raise ValueError(f"unknown segmenter {name!r}; choose one of {', '.join(SEGMENTER_NAMES)}")
