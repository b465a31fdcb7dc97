"""Common corruptions (ImageNet-C family), batched on the tensor's device.

`corrupt(x, name, severity, seed=0, index=None)` applies one corruption to a
batch; `CORRUPTIONS` lists the available names (the 15 standard ones, then the
4 extra ones). Randomness is keyed per (seed, corruption, severity, global
sample index), so results are reproducible and independent of the batch split.
`corruption_sources(names)` says where corruptions with external images take them
from (frost: the imagecorruptions photographs, or the procedural stand-in only when
asked for; see frost.py), and fails early when they are missing.
"""
from __future__ import annotations

import importlib
from typing import Dict, Iterable, Union

import torch
from torch import Tensor

from ...arguments import require_int
from ...counter_rng import sample_index
from ...intra_op_threads import CORRUPTION_GRAIN, intra_op_threads, threads_for
from .base import EXTRA, REGISTRY, SEVERITIES, STANDARD, SampleRandom

# Each corruption lives in its own module named after it; importing registers it.
for _name in STANDARD + EXTRA:
    try:
        importlib.import_module(f"{__name__}.{_name}")
    except ModuleNotFoundError as exc:  # not written yet: listed as unavailable
        if exc.name != f"{__name__}.{_name}":
            raise

CORRUPTIONS = tuple(n for n in STANDARD + EXTRA if n in REGISTRY)


def corruption_sources(names: Iterable[str]) -> Dict[str, str]:
    """{corruption: source of its images} for the corruptions among `names` that read
    external images (today only frost: 'imagecorruptions' or 'procedural').

    Raises ImportError (with what to install or how to opt in to the stand-in) when
    frost is among `names` and its photographs are missing: call it before a long run.
    """
    if "frost" not in set(names):
        return {}
    from .frost import frost_source
    return {"frost": frost_source()}


def corrupt(x: Tensor, name: str, severity: int, *, seed: int = 0,
            index: Union[None, int, Tensor] = None) -> Tensor:
    """Corrupted copy of x (B, C, H, W) float in [0, 1] (C = 1 or 3); same shape and dtype.

    name: one of CORRUPTIONS; severity: 1..5; seed and index (global sample
    indices, or the offset of the first) key the randomness.
    """
    if name not in REGISTRY:
        known = ", ".join(CORRUPTIONS)
        raise ValueError(f"unknown corruption {name!r}; available: {known}")
    require_int(severity, "severity", minimum=min(SEVERITIES), maximum=max(SEVERITIES))
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim != 4:
        raise TypeError("x must be a floating tensor (B, C, H, W) in [0, 1] "
                        "(convert uint8 images with x.float() / 255)")
    if x.shape[1] not in (1, 3):
        raise ValueError(f"x must have 1 or 3 channels, got {x.shape[1]}")
    if x.shape[0] == 0:
        raise ValueError("empty batch")
    if min(x.shape[-2:]) < 8:
        raise ValueError(f"images must be at least 8x8, got {tuple(x.shape[-2:])}")
    # Hundreds of ops on the batch each: threads by the work of one op and the free cores,
    # so a shared machine does not stall at every join (robustops/intra_op_threads.py).
    n_threads = (threads_for(x.numel(), CORRUPTION_GRAIN) if x.device.type == "cpu"
                 else torch.get_num_threads())
    with intra_op_threads(n_threads):
        lo, hi = torch.aminmax(x)  # NaN propagates into both, so one test covers it
        if not (bool(lo >= 0) and bool(hi <= 1)):
            raise ValueError("x must be finite and in [0, 1] (normalise after corrupting, "
                             "not before)")
        rng = SampleRandom(seed, name, severity, sample_index(x.shape[0], index, x.device))
        out = REGISTRY[name](x.float().contiguous(), severity, rng)
    return out.to(x.dtype)


__all__ = ["corrupt", "corruption_sources", "CORRUPTIONS", "STANDARD", "EXTRA", "SEVERITIES",
           "SampleRandom"]
