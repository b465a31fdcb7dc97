"""ResNeXt-29 for 32-pixel images (Xie et al., 2017; the CIFAR network of TENET, METHODS.md 2).

The CIFAR ResNeXt: a 3x3 stem, three stages of (depth - 2) / 9 = 3 bottleneck blocks
each (1x1 reduce, grouped 3x3 with `cardinality` groups, 1x1 expand, BN, residual), the
second and third stages halving the resolution, then global average pooling and a
linear classifier. Stage widths are 64 * widen_factor * (1, 2, 4); the grouped
convolution of a stage with output width W has cardinality * base_width * W /
(64 * widen_factor) channels (the original code's rule, so base_width is the width per
group in the first stage).

Named layers (what ``model.named_modules()`` lists): ``stem``, ``stage1``, ``stage2``,
``stage3``, ``pool``, ``fc``. ``TENET_LAYER = "stage2"``: the stage-2 output, the
feature map TENET's group-wise inhibition acts on (the paper code's ``feature_id = 3``:
512 x 16 x 16 for a 32-pixel image at widen_factor 4, 128 x 16 x 16 for the small
default), e.g. ``GroupInhibition(model, TENET_LAYER)``.

Configurations: ``resnext29(..., config="8x64d")`` is the standard ResNeXt-29 8x64d
(34.4M parameters), "4x32d" the TENET code's default (widen 4), "2x8d" (the default) a
CPU-sized network (cardinality 2, 8 channels per group, widen 1: 0.24M parameters);
cardinality / base_width / widen_factor / stem_width override any of them.
"""
from __future__ import annotations

from typing import Optional

from torch import Tensor, nn

from ..arguments import require_int, require_real
from .small_cnn import _require_positive

__all__ = ["ResNeXt29", "resnext29", "RESNEXT29_CONFIGS", "TENET_LAYER"]

TENET_LAYER = "stage2"
# name: (cardinality, base_width, widen_factor)
RESNEXT29_CONFIGS = {"2x8d": (2, 8, 1), "4x32d": (4, 32, 4), "8x64d": (8, 64, 4),
                     "16x64d": (16, 64, 4)}


class Bottleneck(nn.Module):
    """1x1 reduce -> grouped 3x3 (stride) -> 1x1 expand, BN after each, residual, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, cardinality: int,
                 group_width: int):
        super().__init__()
        d = cardinality * group_width
        self.conv_reduce = nn.Conv2d(in_channels, d, 1, bias=False)
        self.bn_reduce = nn.BatchNorm2d(d)
        self.conv_group = nn.Conv2d(d, d, 3, stride=stride, padding=1, groups=cardinality,
                                    bias=False)
        self.bn_group = nn.BatchNorm2d(d)
        self.conv_expand = nn.Conv2d(d, out_channels, 1, bias=False)
        self.bn_expand = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Identity()
        if in_channels != out_channels or stride != 1:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        h = self.relu(self.bn_reduce(self.conv_reduce(x)))
        h = self.relu(self.bn_group(self.conv_group(h)))
        h = self.bn_expand(self.conv_expand(h))
        return self.relu(h + self.shortcut(x))


class ResNeXt29(nn.Module):
    """ResNeXt-29 (3 stages x 3 bottlenecks) for 32-pixel images; see the module docstring.

    Args:
        num_classes: logits. in_channels: image channels.
        cardinality: groups of the grouped 3x3 convolutions.
        base_width: channels per group in the first stage (doubling with the stages).
        widen_factor: stage widths 64 * widen_factor * (1, 2, 4); a fraction (0.25: 16, 32,
            64) width-scales the network for CPU runs.
        stem_width: channels of the 3x3 stem (64 in the paper).
        depth: 9 * blocks_per_stage + 2 (29: three blocks per stage).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, cardinality: int = 2,
                 base_width: int = 8, widen_factor: int = 1, stem_width: int = 64,
                 depth: int = 29):
        super().__init__()
        _require_positive(num_classes=num_classes, in_channels=in_channels,
                          cardinality=cardinality, base_width=base_width, stem_width=stem_width)
        require_real(widen_factor, "widen_factor",
                     what="a number that makes 64 * widen_factor a positive integer")
        width = 64 * widen_factor
        if width < 1 or width != int(width):
            raise ValueError(f"widen_factor must make 64 * widen_factor a positive integer "
                             f"(e.g. 4, 1, 0.25), got {widen_factor!r}")
        require_int(depth, "depth", what="9 * n + 2 with n >= 1 (29 for ResNeXt-29)")
        if depth < 11 or (depth - 2) % 9:
            raise ValueError(f"depth must be 9 * n + 2 with n >= 1 (29 for ResNeXt-29), "
                             f"got {depth!r}")
        blocks = (depth - 2) // 9
        self.cardinality, self.base_width, self.widen_factor = cardinality, base_width, \
            widen_factor
        widths = [int(width) * m for m in (1, 2, 4)]
        self.stage_widths = tuple(widths)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, stem_width, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(stem_width), nn.ReLU(inplace=True))
        stages, c_in = [], stem_width
        for i, w in enumerate(widths):
            group_width = base_width * w // widths[0]
            layers = [Bottleneck(c_in if j == 0 else w, w, 2 if (i > 0 and j == 0) else 1,
                                 cardinality, group_width) for j in range(blocks)]
            stages.append(nn.Sequential(*layers))
            c_in = w
        self.stage1, self.stage2, self.stage3 = stages
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(widths[-1], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.kaiming_normal_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stage3(self.stage2(self.stage1(self.stem(x))))
        return self.fc(self.pool(x))


def resnext29(num_classes: int = 10, config: str = "2x8d", *, in_channels: int = 3,
              cardinality: Optional[int] = None, base_width: Optional[int] = None,
              widen_factor: Optional[int] = None, stem_width: int = 64,
              small_input: bool = True) -> ResNeXt29:
    """An untrained ResNeXt-29 of a named configuration ("2x8d", "4x32d", "8x64d", "16x64d");
    cardinality / base_width / widen_factor override the configuration's values.

    small_input is accepted for the model registry and must be True: this network is the
    CIFAR (28/32-pixel) ResNeXt; use torchvision's resnext50_32x4d for ImageNet-sized images.
    """
    if config not in RESNEXT29_CONFIGS:
        raise ValueError(f"unknown ResNeXt-29 config {config!r}; choose one of "
                         f"{', '.join(RESNEXT29_CONFIGS)}")
    if not small_input:
        raise ValueError("resnext29 is the 32-pixel (CIFAR) ResNeXt; small_input must be True")
    c, b, w = RESNEXT29_CONFIGS[config]
    return ResNeXt29(num_classes, in_channels, cardinality or c, base_width or b,
                     widen_factor or w, stem_width)

