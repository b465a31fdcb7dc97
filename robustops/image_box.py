"""The image box [lo, hi] of the attacks: one range for every channel, or one per channel.

A model that expects normalised inputs is best attacked on [0, 1] pixels through
robustops.nn.Normalize; where the attack must work in the model's normalised input space,
the box is per channel: lo = (0 - mean) / std, hi = (1 - mean) / std. These helpers check
such bounds once (when the attack is built) and shape them for a batch (B, C, ...).
Floats stay floats, so the fused ops keep their fast path for a single range.
"""
from __future__ import annotations

import math
from numbers import Real
from typing import Sequence, Tuple, Union

import torch
from torch import Tensor

from .arguments import require_real

__all__ = ["Bound", "check_bounds", "outer_box", "bounds_like", "describe_box"]

# A float, or (C,) float64 values on the CPU once checked.
Bound = Union[float, Tensor]


def _channel_values(v, name: str, where: str) -> Bound:
    """v as a float (a number or a one-element tensor), or as (C,) float64 CPU values from
    a (C,) / (C, 1, 1) / (1, C, 1, 1) tensor or a sequence of numbers."""
    what = "a real number or a per-channel tensor (C,) / (1, C, 1, 1)"
    if isinstance(v, Real):  # a bool too: require_real refuses it
        return require_real(v, name, where=where, finite=False, what=what)
    if isinstance(v, (str, bytes)):
        raise TypeError(f"{where}: {name} must be {what}, got {type(v).__name__}")
    if isinstance(v, Tensor):
        if not v.is_floating_point():
            raise TypeError(f"{where}: {name} as a tensor must be floating point, got "
                            f"{v.dtype} (use {name}.float())")
        t = v.detach()
    elif isinstance(v, Sequence):
        try:
            t = torch.tensor([float(e) for e in v], dtype=torch.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{where}: {name} must be a real number or one number per "
                            f"channel, got {v!r}") from None
    else:
        raise TypeError(f"{where}: {name} must be a real number or a per-channel tensor (C,) "
                        f"/ (1, C, 1, 1), got {type(v).__name__}")
    shape = tuple(t.shape)
    if t.numel() == 1:  # one value for every channel, as a float has always been taken
        return float(t.reshape(()).item())
    # Channels first, or in dimension 1 of a batch-shaped (1, C, 1, 1); every other size 1.
    channel_dim = 1 if t.ndim == 4 else 0
    if t.numel() == 0 or any(s != 1 for d, s in enumerate(shape) if d != channel_dim):
        raise ValueError(f"{where}: {name} must hold one value per channel, shaped (C,), "
                         f"(C, 1, 1) or (1, C, 1, 1), got shape {shape}")
    return t.reshape(-1).to("cpu", torch.float64)


def check_bounds(lo, hi, where: str = "attack", strict: bool = True) -> Tuple[Bound, Bound]:
    """(lo, hi) checked: floats when both are numbers (or one-element tensors), else both
    (C,) float64 CPU tensors (a number stands for every channel). Finite, lo < hi in every
    channel (lo <= hi unless strict); TypeError for a wrong type or dtype, ValueError for a
    wrong shape or value. A GPU tensor is read once."""
    lo_v, hi_v = _channel_values(lo, "lo", where), _channel_values(hi, "hi", where)
    order = "<" if strict else "<="
    if isinstance(lo_v, float) and isinstance(hi_v, float):
        if not (math.isfinite(lo_v) and math.isfinite(hi_v)
                and (lo_v < hi_v if strict else lo_v <= hi_v)):
            raise ValueError(f"{where}: need finite lo {order} hi, got lo={lo_v}, hi={hi_v}")
        return lo_v, hi_v
    c = max(t.numel() for t in (lo_v, hi_v) if isinstance(t, Tensor))
    lo_t, hi_t = (torch.full((c,), v, dtype=torch.float64) if isinstance(v, float) else v
                  for v in (lo_v, hi_v))
    if lo_t.numel() != hi_t.numel():
        raise ValueError(f"{where}: lo has {lo_t.numel()} channels and hi {hi_t.numel()}; "
                         "give both one value per channel")
    bad = (~torch.isfinite(lo_t)) | (~torch.isfinite(hi_t)) | \
        ((lo_t >= hi_t) if strict else (lo_t > hi_t))
    if bool(bad.any()):
        ch = int(bad.nonzero()[0, 0])
        raise ValueError(f"{where}: need finite lo {order} hi in every channel, got "
                         f"lo={lo_t.tolist()}, hi={hi_t.tolist()} (channel {ch})")
    return lo_t, hi_t


def outer_box(lo: Bound, hi: Bound) -> Tuple[float, float]:
    """The smallest single range holding every channel's: (min lo, max hi)."""
    return (lo if isinstance(lo, float) else float(lo.min()),
            hi if isinstance(hi, float) else float(hi.max()))


def bounds_like(lo: Bound, hi: Bound, x: Tensor) -> Tuple[Bound, Bound]:
    """lo, hi for a batch x (B, C, ...): floats as they are; per-channel values as
    (1, C, 1, ..., 1) tensors in x's dtype and device (ValueError if x has another number
    of channels). Copies to x's device: callers that step often cache the result."""
    if isinstance(lo, float):
        return lo, hi
    c = lo.numel()
    if x.ndim < 2 or x.shape[1] != c:
        raise ValueError(f"per-channel lo/hi have {c} channels but the images have shape "
                         f"{tuple(x.shape)} (channels in dimension 1); give one value per "
                         "channel of the images")
    shape = (1, c) + (1,) * (x.ndim - 2)
    return tuple(t.to(device=x.device, dtype=x.dtype).reshape(shape) for t in (lo, hi))


def describe_box(lo: Bound, hi: Bound) -> str:
    """'[0.0, 1.0]', or 'the per-channel box ([-2.1, 2], [...])' for messages."""
    if isinstance(lo, float):
        return f"[{lo}, {hi}]"
    ranges = ", ".join(f"[{a:.4g}, {b:.4g}]" for a, b in zip(lo.tolist(), hi.tolist()))
    return f"the per-channel box ({ranges})"
