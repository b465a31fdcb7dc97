"""Datasets, models, objectives and attacks by name, for the `robustops train` / `eval` commands.

The names and builders come from the registries (one per kind): datasets from
robustops.data.dataset_registry, model families from robustops.models.registry,
objectives from robustops.train.objective_registry. This module only looks them up.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple

from torch import nn
from torch.utils.data import Dataset


def __getattr__(name: str):
    """DATASETS, MODELS (names) and TENET_LAYERS ({family: default layer}), read live
    from the registries."""
    if name == "DATASETS":
        from .data.dataset_registry import dataset_names

        return dataset_names()
    if name == "MODELS":
        from .models.registry import model_names

        return model_names()
    if name == "TENET_LAYERS":
        from .models.registry import MODEL_FAMILIES

        return {n: f.tenet_layer for n, f in MODEL_FAMILIES.items() if f.tenet_layer}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _unknown(kind: str, name: str, names) -> ValueError:
    return ValueError(f"unknown {kind} {name!r}; choose one of {', '.join(names)}")


def dataset(name: str, split: str, seed: int = 0, data: Optional[Mapping[str, Any]] = None,
            parts: bool = False) -> Tuple[Dataset, Dict[str, int]]:
    """(dataset, {'in_channels', 'image_size', 'num_classes'[, 'num_parts']}) for a
    registered dataset; data: the [data] values it reads (root, image_size, n_train, ...);
    parts: packed part targets (datasets with part masks only)."""
    from .data.dataset_registry import DATASETS

    if name not in DATASETS:
        raise _unknown("dataset", name, DATASETS)
    entry = DATASETS[name]
    if parts and not entry.has_parts:
        raise ValueError(f"dataset {name!r} has no part masks")
    return entry.build(dict(data or {}), split, seed, parts)


def model(name: str, meta: Dict[str, int], stem: str = "auto") -> nn.Module:
    """An untrained model of family `name` sized for the dataset described by `meta`.

    stem (torchvision families): 'small' (3x3 stride 1, no max-pool: the CIFAR stem),
    'imagenet' (torchvision's own), 'auto' (small for images <= 64 px).
    """
    from .models.registry import MODEL_FAMILIES, STEMS

    if stem not in STEMS:
        raise ValueError(f"stem must be one of {', '.join(STEMS)}, got {stem!r}")
    if name not in MODEL_FAMILIES:
        raise _unknown("model", name, MODEL_FAMILIES)
    return MODEL_FAMILIES[name].build(meta, stem)


def objective(name: str, eps: float, steps: int, alpha, beta: Optional[float], replays: int,
              seed: int, layer: str = "stage2", seg_weight: Optional[float] = None):
    """A training objective by its name (robustops.train.OBJECTIVES); None for alpha,
    beta or seg_weight takes the objective's default.

    layer: the layer TENET inhibits (tenet, tenet_free_at); TENET_LAYERS holds each
    model's default ('stage2' is ResNeXt-29's).
    """
    from .train.objective_registry import OBJECTIVE_ENTRIES

    if name not in OBJECTIVE_ENTRIES:
        raise _unknown("objective", name, OBJECTIVE_ENTRIES)
    settings = {"eps": eps, "steps": steps, "alpha": alpha, "beta": beta, "replays": replays,
                "layer": layer, "seg_weight": seg_weight}
    return OBJECTIVE_ENTRIES[name].build(settings, seed)


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
