"""Put a model in attack state for a block and restore it exactly afterwards."""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch

MODES = ("eval", "train", "as_is")

# EOT draws an attack uses by default on a model that declares itself stochastic.
STOCHASTIC_EOT_SAMPLES = 8


def is_stochastic(model: torch.nn.Module) -> bool:
    """True when some submodule declares `stochastic = True` (e.g. a VOneBlock with fresh
    noise): two forward passes on one input differ, so gradients need EOT."""
    return any(bool(getattr(m, "stochastic", False)) for m in model.modules())


def default_eot_samples(model, eot_samples):
    """eot_samples as given, or (None) STOCHASTIC_EOT_SAMPLES for a stochastic model, else 1."""
    if eot_samples is not None:
        return eot_samples
    return STOCHASTIC_EOT_SAMPLES if isinstance(model, torch.nn.Module) and is_stochastic(model) else 1


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
