"""Class selectivity of units (Morcos et al., 2018): how few kinds of input drive a unit.

selectivity = (mu_max - mu_rest) / (mu_max + mu_rest), with mu the unit's mean
(spatially averaged, non-negative) activation per class, mu_max the largest and
mu_rest the mean over the other classes. 0: responds to all classes alike;
1: responds to one class only. Compute it on images the compared models all
classify correctly (pass those images).
"""
from __future__ import annotations

from typing import Dict

import torch
from torch import Tensor, nn


@torch.no_grad()
def class_selectivity(model: nn.Module, layer: str, images: Tensor, labels: Tensor, *,
                      batch_size: int = 128) -> Dict[str, Tensor]:
    """{'selectivity': (units,), 'class_means': (classes, units)} for `layer`'s units."""
    modules = dict(model.named_modules())
    if layer not in modules:
        raise ValueError(f"no layer named {layer!r} in the model")
    k = int(labels.max()) + 1
    store = {}
    h = modules[layer].register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    device = next(iter(model.parameters())).device
    sums, counts = None, torch.zeros(k, dtype=torch.float64)
    was_training = model.training
    model.eval()
    try:
        for i in range(0, images.shape[0], batch_size):
            model(images[i:i + batch_size].to(device))
            a = store["a"].float()
            a = a.clamp_min(0).mean((2, 3)) if a.ndim == 4 else a.clamp_min(0)
            y = labels[i:i + batch_size].to(a.device)
            if sums is None:
                sums = torch.zeros(k, a.shape[1], dtype=torch.float64)
            sums.index_add_(0, y.cpu(), a.cpu().double())
            counts += torch.bincount(y.cpu(), minlength=k).double()
    finally:
        h.remove()
        model.train(was_training)
    if sums is None:
        raise ValueError("no images given")
    present = counts > 0
    means = (sums[present] / counts[present, None]).float()
    if means.shape[0] < 2:
        raise ValueError("selectivity needs images of at least two classes")
    mx, arg = means.max(0)
    rest = (means.sum(0) - mx) / (means.shape[0] - 1)
    sel = (mx - rest) / (mx + rest).clamp_min(1e-12)
    return {"selectivity": sel, "class_means": means, "preferred_class": arg}
