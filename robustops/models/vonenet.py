"""VOneNets: a VOneBlock V1 front-end, a 1x1 bottleneck, and a CNN back-end without its stem.

`vonenet(backbone, num_classes, image_size=..., variant=..., **block_kwargs)` builds
one. Back-ends: 'resnet18' / 'resnet50' (torchvision, from layer1 on), 'alexnet'
(VOneNet's AlexNet back-end, from conv2 on) and 'small' (two conv blocks, for CPU
experiments). Presets per image size set ksize, stride and the visual field so the
V1 maps keep a useful resolution: 224 (VOneNet's 25x25 / 4), 64 and 32.
Variants (V1_VARIANTS) change the front-end only: spatial-frequency band, noise
level, simple/complex mix.
"""
from __future__ import annotations

from typing import Any, Dict, Union

import torch
from torch import Tensor, nn
from torchvision import models as tvm

from ..nn.vone_block import VOneBlock

# Per image size: the block geometry. Spatial frequencies stay below Nyquist:
# sf_max (cycles/deg) <= 0.5 * image_size / visual_degrees. sf_max = 6 at 224 px is
# VOneNet's training script's (train.py --sf_max); its VOneNet() builder defaults to 9.
IMAGE_PRESETS: Dict[int, Dict[str, Any]] = {
    224: dict(ksize=25, stride=4, visual_degrees=8.0, sf_max=6.0),
    64: dict(ksize=13, stride=2, visual_degrees=4.0, sf_max=6.0),
    # 2 deg (ppd 16): at 4 deg (ppd 8, 9x9) members of the v1-study measured 71% clean /
    # 23% corrupted vs 76% / 32% here; the finest filters there are ~2-pixel periods.
    32: dict(ksize=15, stride=1, visual_degrees=2.0, sf_max=6.0),
}

# Named front-end variants (METHODS.md section 3); each entry overrides block knobs.
V1_VARIANTS: Dict[str, Dict[str, Any]] = {
    "base": {},
    "low_sf": dict(sf_min=0.0, sf_max=2.0),        # coarse filters: noise/blur robustness
    "high_sf": dict(sf_min=2.0),                   # fine filters: keeps detail
    "noise_off": dict(noise_mode="off"),
    "noise_low": dict(noise_scale=0.7),            # noise amplitude ~ 1/sqrt(scale)
    "noise_high": dict(noise_scale=0.175),
    "simple_only": dict(simple_only=True),
    "complex_only": dict(complex_only=True),
}

BACKBONES = ("resnet18", "resnet50", "alexnet", "small")


def v1_block_config(image_size: int = 224, variant: str = "base", **overrides) -> Dict[str, Any]:
    """The VOneBlock arguments of a preset image size and a named variant, then overrides."""
    if image_size not in IMAGE_PRESETS:
        raise ValueError(f"no preset for image_size {image_size}; presets: "
                         f"{sorted(IMAGE_PRESETS)} (or pass ksize/stride/visual_degrees yourself "
                         f"with the nearest preset)")
    if variant not in V1_VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; variants: {', '.join(V1_VARIANTS)}")
    # Preset, then the variant, then the caller's overrides (they win).
    cfg: Dict[str, Any] = dict(image_size=image_size, **IMAGE_PRESETS[image_size])
    v = dict(V1_VARIANTS[variant])
    simple_only, complex_only = v.pop("simple_only", False), v.pop("complex_only", False)
    cfg.update(v)
    cfg.update(overrides)
    total = cfg.get("simple_channels", 256) + cfg.get("complex_channels", 256)
    if simple_only:
        cfg.update(simple_channels=total, complex_channels=0)
    if complex_only:
        cfg.update(simple_channels=0, complex_channels=total)
    return cfg


class _AlexNetBackEnd(nn.Module):
    """VOneNet's AlexNet back-end: AlexNet from its second convolution, on 64 channels."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(64, 192, 5, stride=2, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2))
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = tvm.alexnet(weights=None, num_classes=num_classes).classifier

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def _back_end(backbone: str, num_classes: int) -> nn.Module:
    if backbone in ("resnet18", "resnet50"):
        r = getattr(tvm, backbone)(weights=None, num_classes=num_classes)
        return nn.Sequential(r.layer1, r.layer2, r.layer3, r.layer4, r.avgpool, nn.Flatten(), r.fc)
    if backbone == "alexnet":
        return _AlexNetBackEnd(num_classes)
    if backbone == "small":
        def block(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                    nn.ReLU(inplace=True)]
        return nn.Sequential(*block(64, 64), *block(64, 64), nn.MaxPool2d(2),
                             *block(64, 128), *block(128, 128),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, num_classes))
    raise ValueError(f"unknown backbone {backbone!r}; choose from {', '.join(BACKBONES)}")


class VOneNet(nn.Module):
    """front (VOneBlock) -> bottleneck (1x1 conv to 64, no bias) -> back_end -> logits.

    x: (B, C, H, W) in [0, 1] -> (B, num_classes). `index` (global sample indices)
    keys the V1 noise in 'fixed' noise mode.
    """

    def __init__(self, front: VOneBlock, back_end: nn.Module, *, bottleneck: bool = True):
        super().__init__()
        self.front = front
        self.bottleneck = (nn.Conv2d(front.out_channels, 64, 1, bias=False) if bottleneck
                           else nn.Identity())
        self.back_end = back_end

    @property
    def stochastic(self) -> bool:
        return self.front.stochastic

    def head(self, v1: Tensor) -> Tensor:
        """Logits from the front-end's output (the fused ensemble calls this)."""
        return self.back_end(self.bottleneck(v1))

    def forward(self, x: Tensor, index: Union[None, int, Tensor] = None) -> Tensor:
        return self.head(self.front(x, index))


def vonenet(backbone: str = "resnet50", num_classes: int = 1000, *, image_size: int = 224,
            variant: str = "base", **block_kwargs) -> VOneNet:
    """A VOneNet with the named back-end, preset geometry for image_size and a V1 variant;
    block_kwargs override any VOneBlock knob (gabor_seed, noise_mode, channels, ...)."""
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose from {', '.join(BACKBONES)}")
    front = VOneBlock(**v1_block_config(image_size, variant, **block_kwargs))
    return VOneNet(front, _back_end(backbone, num_classes))
