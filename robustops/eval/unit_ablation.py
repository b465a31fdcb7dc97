"""Concept ablation: zero chosen units of a layer and measure the accuracy change."""
from __future__ import annotations

import contextlib
from typing import Dict, Iterator, Sequence

import torch
from torch import Tensor, nn

from .accuracy import accuracy
from .dissection import Dissection


@contextlib.contextmanager
def units_zeroed(model: nn.Module, layer: str, units: Sequence[int]) -> Iterator[None]:
    """Within the block, `layer`'s output channels `units` are zero (a removable hook)."""
    modules = dict(model.named_modules())
    if layer not in modules:
        raise ValueError(f"no layer named {layer!r} in the model")
    idx = torch.as_tensor(list(units), dtype=torch.long)

    def hook(mod, inp, out):
        if idx.numel() == 0:
            return out
        out = out.clone()
        out[:, idx.to(out.device)] = 0
        return out

    h = modules[layer].register_forward_hook(hook)
    try:
        yield
    finally:
        h.remove()


def concept_ablation(model: nn.Module, dissection: Dissection, images: Tensor, labels: Tensor, *,
                     batch_size: int = 256) -> Dict[str, Dict[str, float]]:
    """{concept: {'units', 'accuracy', 'change'}} after zeroing the units labelled with it."""
    was_training = model.training
    model.eval()
    try:
        base = accuracy(model, images, labels, batch_size)
        out = {"none": {"units": 0, "accuracy": base, "change": 0.0}}
        for concept in dissection.concepts:
            units = dissection.units_for(concept)
            if not units:
                continue
            with units_zeroed(model, dissection.layer, units):
                acc = accuracy(model, images, labels, batch_size)
            out[concept] = {"units": len(units), "accuracy": acc, "change": acc - base}
    finally:
        model.train(was_training)
    return out
