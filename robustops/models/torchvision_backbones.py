"""torchvision backbones (AlexNet, GoogLeNet, ResNet-18/50), untrained, with small-image stems.

Every builder constructs the torchvision architecture with ``weights=None`` (no
machine here can download weights) and optionally adapts its input stem:

- ``in_channels != 3`` swaps the first convolution for one with that many input
  channels (same geometry, fresh weights);
- ``small_input=True`` adapts the stem to 28/32-pixel images: the first
  convolution becomes 3x3 stride 1, and the early downsampling that would shrink
  such images to a few pixels is removed (the CIFAR variants of these networks).

``robustops.models.registry`` names them (``build_model``, ``MODEL_NAMES``).
All models map x: (B, C, H, W) float in [0, 1] to (B, num_classes) logits.
"""
from __future__ import annotations

from typing import Any, Callable

from torch import nn
from torchvision import models as tvm

from .small_cnn import SmallCNN, _require_positive


def _stem_conv(old: nn.Conv2d, in_channels: int, small_input: bool) -> nn.Conv2d:
    """The first convolution adapted to ``in_channels`` and, if asked, to small images.

    Returns ``old`` itself when nothing changes, so the default builders are
    exactly torchvision's models.
    """
    if in_channels == old.in_channels and not small_input:
        return old
    if small_input:
        # 3x3 stride 1 keeps the full resolution of a 28/32-pixel image, as in
        # the CIFAR ResNets (He et al., 2016, section 4.2).
        kernel_size, stride, padding = 3, 1, 1
    else:
        kernel_size, stride, padding = old.kernel_size, old.stride, old.padding
    new = nn.Conv2d(in_channels, old.out_channels, kernel_size, stride=stride,
                    padding=padding, bias=old.bias is not None)
    # He init suits the ReLU that follows every stem here (torchvision's ResNet
    # uses the same); the replaced weights' init does not fit a new fan-in.
    nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
    if new.bias is not None:
        nn.init.zeros_(new.bias)
    return new


def alexnet(num_classes: int = 1000, small_input: bool = False, in_channels: int = 3,
            **kwargs: Any) -> tvm.AlexNet:
    """Untrained AlexNet; ``kwargs`` go to ``torchvision.models.AlexNet`` (e.g. ``dropout``).

    With ``small_input`` the 11x11 stride-4 stem becomes 3x3 stride 1, and the
    three 3x3 stride-2 max-pools then leave 3x3 maps at 32 px (2x2 at 28 px),
    which the adaptive average pool brings to the 6x6 the classifier expects.
    """
    _require_positive(num_classes=num_classes, in_channels=in_channels)
    model = tvm.alexnet(weights=None, num_classes=num_classes, **kwargs)
    model.features[0] = _stem_conv(model.features[0], in_channels, small_input)
    return model


def googlenet(num_classes: int = 1000, small_input: bool = False, in_channels: int = 3,
              **kwargs: Any) -> tvm.GoogLeNet:
    """Untrained GoogLeNet (no auxiliary heads); ``kwargs`` go to ``torchvision.models.GoogLeNet``.

    With ``small_input`` the 7x7 stride-2 stem becomes 3x3 stride 1 and the first
    two max-pools are dropped, so a 32-pixel image reaches the first inception
    blocks at 32x32 (not 4x4) and the last ones at 8x8 (not 1x1).
    """
    _require_positive(num_classes=num_classes, in_channels=in_channels)
    # No aux heads: forward then returns plain logits in train mode too.
    # init_weights=True chooses the init explicitly, silencing torchvision's FutureWarning.
    kwargs.setdefault("aux_logits", False)
    kwargs.setdefault("init_weights", True)
    model = tvm.googlenet(weights=None, num_classes=num_classes, **kwargs)
    model.conv1.conv = _stem_conv(model.conv1.conv, in_channels, small_input)
    if small_input:
        model.maxpool1 = nn.Identity()
        model.maxpool2 = nn.Identity()
    return model


def _resnet(build: Callable[..., tvm.ResNet], num_classes: int, small_input: bool,
            in_channels: int, **kwargs: Any) -> tvm.ResNet:
    """A torchvision ResNet from ``build`` with the stem adapted; see ``resnet18``."""
    _require_positive(num_classes=num_classes, in_channels=in_channels)
    model = build(weights=None, num_classes=num_classes, **kwargs)
    model.conv1 = _stem_conv(model.conv1, in_channels, small_input)
    if small_input:
        model.maxpool = nn.Identity()
    return model


def resnet18(num_classes: int = 1000, small_input: bool = False, in_channels: int = 3,
             **kwargs: Any) -> tvm.ResNet:
    """Untrained ResNet-18; ``kwargs`` go to ``torchvision.models.ResNet``.

    With ``small_input`` the 7x7 stride-2 stem becomes 3x3 stride 1 and the
    max-pool is dropped (the CIFAR ResNet stem): a 32-pixel image leaves the last
    stage as 4x4 maps instead of 1x1.
    """
    return _resnet(tvm.resnet18, num_classes, small_input, in_channels, **kwargs)


def resnet50(num_classes: int = 1000, small_input: bool = False, in_channels: int = 3,
             **kwargs: Any) -> tvm.ResNet:
    """Untrained ResNet-50; same options as ``resnet18``."""
    return _resnet(tvm.resnet50, num_classes, small_input, in_channels, **kwargs)
