"""The registry of model families by name: one entry per family.

Config validation ([model] name), the CLI's `--model` choices, `recipes.model`, TENET's
default layer and ``build_model`` all read MODEL_FAMILIES; a family added here
(``register_model``) is known to all of them.

    model = MODEL_FAMILIES["resnet18"].build({"in_channels": 3, "image_size": 32,
                                              "num_classes": 10}, "auto")
    model = build_model("resnet18", 10, small_input=True)   # the backbone families

All models map x: (B, C, H, W) float in [0, 1] to (B, num_classes) logits; a part model
also gives part logits (B, K+1, H, W) with forward(x, return_parts=True).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from torch import nn

from ..registry_table import add_entry
from .resnext import TENET_LAYER as RESNEXT29_TENET_LAYER
from .small_cnn import SmallCNN
from .torchvision_backbones import alexnet, googlenet, resnet18, resnet50

__all__ = ["ModelFamily", "MODEL_FAMILIES", "register_model", "model_names", "MODEL_NAMES",
           "build_model", "STEMS"]

# [model] stem values: small (3x3 stride 1, no max-pool: the CIFAR stem), imagenet
# (torchvision's own), auto (small for images <= 64 px).
STEMS = ("auto", "small", "imagenet")


@dataclasses.dataclass(frozen=True)
class ModelFamily:
    """One model family: what `--help`, config validation and the builders need.

    build(meta, stem) -> an untrained model sized by meta {'in_channels', 'image_size',
    'num_classes'[, 'num_parts']}; stems: the [model] stem values it honours (only
    'auto': it has one stem of its own); tenet_layer: the feature map TENET inhibits by
    default ([objective] layer; model.named_modules() names), None: no default;
    part_model: forward(x, return_parts=True) gives part logits (what the part
    objectives train) and it needs meta 'num_parts'; backbone: the builder
    ``build_model(name, num_classes, small_input, in_channels, **kw)`` calls, if any.
    """

    name: str
    summary: str
    build: Callable[[Mapping[str, int], str], nn.Module]
    stems: Tuple[str, ...] = STEMS
    tenet_layer: Optional[str] = None
    part_model: bool = False
    backbone: Optional[Callable[..., nn.Module]] = None


MODEL_FAMILIES: Dict[str, ModelFamily] = {}


def register_model(family: ModelFamily) -> ModelFamily:
    """Add `family` to MODEL_FAMILIES (config, CLI and recipes then know it); a name is
    taken once."""
    return add_entry(MODEL_FAMILIES, family, ModelFamily, "model family", "register_model")


def model_names() -> Tuple[str, ...]:
    """Every registered family name, in registration order."""
    return tuple(MODEL_FAMILIES)


def _backbone_names() -> Tuple[str, ...]:
    return tuple(n for n, f in MODEL_FAMILIES.items() if f.backbone is not None)


def build_model(name: str, num_classes: int, small_input: bool = False, in_channels: int = 3,
                **kw: Any) -> nn.Module:
    """Build an untrained model of backbone family ``name`` (one of ``MODEL_NAMES``).

    ``small_input`` adapts the stem to 28/32-pixel images; ``in_channels`` sets the
    image channels; ``kw`` goes to the family's builder (e.g. ``image_size`` and
    ``width`` for ``small_cnn``, ``dropout`` for ``alexnet``).
    Raises ValueError for an unknown name, ``num_classes < 1`` or ``in_channels < 1``.
    """
    family = MODEL_FAMILIES.get(name) if isinstance(name, str) else None
    if family is None or family.backbone is None:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(_backbone_names())}")
    return family.backbone(num_classes=num_classes, small_input=small_input,
                           in_channels=in_channels, **kw)


def _small_input(meta: Mapping[str, int], stem: str) -> bool:
    if stem not in STEMS:
        raise ValueError(f"stem must be one of {', '.join(STEMS)}, got {stem!r}")
    return {"auto": meta["image_size"] <= 64, "small": True, "imagenet": False}[stem]


def _small_cnn(num_classes: int = 10, small_input: bool = True, in_channels: int = 1,
               **kwargs: Any) -> SmallCNN:
    """SmallCNN as a backbone: it is a small-image model whatever ``small_input`` says.

    ``image_size`` defaults to 28 for one channel (MNIST) and 32 otherwise (CIFAR).
    """
    kwargs.setdefault("image_size", 28 if in_channels == 1 else 32)
    return SmallCNN(in_channels=in_channels, num_classes=num_classes, **kwargs)


def _sized_small_cnn(meta, stem):
    _small_input(meta, stem)  # checks the name; SmallCNN has one stem whatever it says
    kw = {"image_size": meta["image_size"]}
    if meta["image_size"] < 28:  # 16-px digits: a narrower net
        kw.update(width=16, hidden=64)
    return _small_cnn(meta["num_classes"], in_channels=meta["in_channels"], **kw)


def _backbone_family(name: str, summary: str, builder, tenet_layer: str) -> ModelFamily:
    def build(meta, stem):
        return builder(num_classes=meta["num_classes"], small_input=_small_input(meta, stem),
                       in_channels=meta["in_channels"])

    return ModelFamily(name, summary, build, tenet_layer=tenet_layer, backbone=builder)


def _resnext29(meta, stem):
    from .resnext import resnext29  # the CIFAR ResNeXt, CPU-sized 2x8d

    return resnext29(meta["num_classes"], in_channels=meta["in_channels"])


def _part_model(meta, stem):
    from .part_model import build_part_model

    if meta.get("num_parts") is None:
        raise ValueError("part_model needs a dataset with part masks (its number of parts "
                         "sizes the segmenter)")
    if meta["in_channels"] != 3:
        raise ValueError(f"part_model takes RGB images, got {meta['in_channels']} channels")
    return build_part_model(meta["num_parts"], meta["num_classes"], head="weighted_bbox",
                            segmenter="small")


register_model(ModelFamily("small_cnn", "a small CNN sized for the images", _sized_small_cnn,
                           tenet_layer="features.4", backbone=_small_cnn))
register_model(_backbone_family("alexnet", "torchvision AlexNet", alexnet, "features.5"))
register_model(_backbone_family("googlenet", "torchvision GoogLeNet", googlenet, "inception3b"))
register_model(_backbone_family("resnet18", "torchvision ResNet-18", resnet18, "layer2"))
register_model(_backbone_family("resnet50", "torchvision ResNet-50", resnet50, "layer2"))
register_model(ModelFamily("resnext29", "CIFAR ResNeXt-29, CPU-sized 2x8d", _resnext29,
                           stems=("auto",), tenet_layer=RESNEXT29_TENET_LAYER))
register_model(ModelFamily("part_model", "part segmenter -> weighted-bbox head (needs a "
                           "dataset with part masks)", _part_model, stems=("auto",),
                           part_model=True))

# The backbone families build_model builds (the part model and ResNeXt-29 are sized by
# meta only).
MODEL_NAMES = _backbone_names()
