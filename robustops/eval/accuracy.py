"""Clean top-1 accuracy of a classifier over tensors or any data, in batches on the model's device."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from .dataset_batches import Data, iterate_batches


@torch.no_grad()
def accuracy(model: nn.Module, x, y: Optional[Tensor] = None, batch_size: int = 256, *,
             image_key: Optional[str] = None, label_key: Optional[str] = None) -> float:
    """Fraction of samples whose argmax logit equals their label, with the model in eval mode.

    Either x (N, C, H, W) and y (N,) tensors, or x alone as data: an (x, y) tuple, a
    Dataset or a DataLoader / iterable of batches, with tuple or dict samples (dicts read
    at image_key / label_key; see robustops.data.batches). Batches move to the model's
    device, so CPU-held data works with a GPU model; the model's train/eval mode is
    restored afterwards.
    """
    if y is not None:
        if not isinstance(x, Tensor) or not isinstance(y, Tensor):
            raise TypeError("accuracy(model, x, y) takes two tensors; pass other data alone: "
                            "accuracy(model, data)")
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x has {x.shape[0]} samples but y has {y.shape[0]}")
        data: Data = (x, y)
    else:
        data = x
    was_training = model.training
    model.eval()
    p = next(model.parameters(), None)
    correct = n = 0
    try:
        for xb, yb in iterate_batches(data, batch_size, image_key=image_key, label_key=label_key):
            device = p.device if p is not None else xb.device
            xb, yb = xb.to(device), yb.to(device)
            correct += int((model(xb).argmax(1) == yb).sum())
            n += xb.shape[0]
    finally:
        model.train(was_training)  # the caller's mode comes back
    if n == 0:
        raise ValueError("accuracy of an empty set is undefined: pass at least one sample")
    return correct / n
