"""Put a model in attack state for a block and restore it exactly afterwards."""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch

MODES = ("eval", "train", "as_is")


@contextlib.contextmanager
def attack_state(model: torch.nn.Module, mode: str = "eval") -> Iterator[torch.nn.Module]:
    """Freeze parameters and set the mode for an attack; restore every flag on exit.

    mode: 'eval' (attacks target the deterministic model, as in PGD-AT), 'train'
    (e.g. free AT), or 'as_is'. Each submodule's `training` flag and each
    parameter's `requires_grad` are restored as found, even on error.
    """
    if mode not in MODES:
        raise ValueError(f"model mode must be one of {', '.join(MODES)}, got {mode!r}")
    training = [(m, m.training) for m in model.modules()]
    grads = [(p, p.requires_grad) for p in model.parameters()]
    try:
        # Parameter gradients are never needed by an attack: skipping them
        # saves the weight-gradient half of every backward pass.
        for p, _ in grads:
            p.requires_grad_(False)
        if mode == "eval":
            model.eval()
        elif mode == "train":
            model.train()
        yield model
    finally:
        for m, flag in training:
            m.training = flag
        for p, flag in grads:
            p.requires_grad_(flag)
