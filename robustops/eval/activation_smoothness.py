"""Total-variation smoothness of activation maps, per layer (METHODS.md section 4).

TV(A) = sum |A[i, j] - A[i + 1, j]| + sum |A[i, j] - A[i, j + 1]| for each channel
map A, averaged over channels and images. Robust models are expected to have
smoother (lower-TV) maps. Because TV scales with activation magnitude, the
normalised value TV / sum |A| is reported too, so models of different scale
compare fairly.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch
from torch import Tensor, nn


def total_variation(a: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, C) anisotropic total variation of each channel map."""
    if a.ndim != 4:
        raise ValueError(f"expected (B, C, H, W) activations, got {tuple(a.shape)}")
    return (a[:, :, 1:, :] - a[:, :, :-1, :]).abs().sum((2, 3)) + \
        (a[:, :, :, 1:] - a[:, :, :, :-1]).abs().sum((2, 3))


def conv_layer_names(model: nn.Module) -> list:
    """Names of the modules whose outputs are 4-D maps worth measuring (conv layers)."""
    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


@torch.no_grad()
def activation_smoothness(model: nn.Module, x: Tensor, layers: Optional[Sequence[str]] = None,
                          *, noise_std: float = 0.0, seed: int = 0,
                          batch_size: int = 128) -> Dict[str, Dict[str, float]]:
    """{layer: {'tv': mean TV per channel map, 'tv_normalized': TV / sum |A|}} on images x.

    layers: module names (default: every Conv2d); noise_std > 0 adds Gaussian
    noise to the inputs first (clamped to [0, 1]), to measure smoothness on noisy inputs.
    """
    names = list(layers) if layers is not None else conv_layer_names(model)
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        raise ValueError(f"no such layers: {missing}; conv layers are {conv_layer_names(model)}")
    if not names:
        raise ValueError("no layers to measure (the model has no Conv2d)")
    sums = {n: [0.0, 0.0, 0] for n in names}

    def hook(name):
        def fn(mod, inp, out):
            if out.ndim == 4:
                tv = total_variation(out.float())
                mag = out.float().abs().sum((2, 3)).clamp_min(1e-12)
                s = sums[name]
                s[0] += float(tv.mean(1).sum())
                s[1] += float((tv / mag).mean(1).sum())
                s[2] += out.shape[0]
        return fn

    handles = [modules[n].register_forward_hook(hook(n)) for n in names]
    was_training = model.training
    model.eval()
    device = next(iter(model.parameters())).device
    gen = torch.Generator(device="cpu").manual_seed(seed)
    try:
        for i in range(0, x.shape[0], batch_size):
            xb = x[i:i + batch_size]
            if noise_std > 0:  # CPU noise (seeded the same whatever the device), then moved
                noise = torch.randn(xb.shape, generator=gen).to(xb.device, xb.dtype)
                xb = (xb + noise_std * noise).clamp(0, 1)
            model(xb.to(device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {n: {"tv": s[0] / s[2], "tv_normalized": s[1] / s[2]} for n, s in sums.items() if s[2]}
