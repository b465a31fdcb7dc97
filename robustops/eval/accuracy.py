"""Clean top-1 accuracy of a classifier over tensors, in batches on the model's device."""
from __future__ import annotations

import torch
from torch import Tensor, nn


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 256) -> float:
    """Fraction of x (N, C, H, W) whose argmax logit equals y (N,), with the model in eval mode.

    Batches move to the model's device, so CPU-held data works with a GPU model; the
    model's train/eval mode is restored afterwards.
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} samples but y has {y.shape[0]}")
    if x.shape[0] == 0:
        raise ValueError("accuracy of an empty set is undefined: pass at least one sample")
    was_training = model.training
    model.eval()
    p = next(model.parameters(), None)
    device = p.device if p is not None else x.device
    correct = 0
    try:
        for i in range(0, x.shape[0], batch_size):
            xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
            correct += int((model(xb).argmax(1) == yb).sum())
    finally:
        model.train(was_training)  # the caller's mode comes back
    return correct / x.shape[0]
