"""Per-channel input normalisation as a layer, so a model trained on normalised inputs takes
[0, 1] pixels: attacks, eps and the [0, 1] box then all live in pixel space.

    net = normalized(model, mean=(0.4914, 0.4822, 0.4465), std=(0.2471, 0.2435, 0.2616))
    # == nn.Sequential(Normalize(mean, std), model), children named `normalize` and `model`

Attacking `model` on normalised data instead is the classic silent error: the [0, 1] clamp
and eps are then in the wrong units (eps 8/255 in normalised units is about 2/255 in
pixels, and the clamp cuts most of the image off).
"""
from __future__ import annotations

import math
from collections import OrderedDict
from numbers import Real
from typing import Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from ..arguments import require_real

__all__ = ["Normalize", "normalized"]

Values = Union[float, Sequence[float], Tensor]


def _channel_values(name: str, v: Values) -> Tensor:
    """v as a (C,) float64 tensor; TypeError / ValueError naming `name` otherwise."""
    if isinstance(v, Real):  # a bool too: require_real refuses it
        v = require_real(v, name, where="Normalize", finite=False,
                         what="a float, a sequence of floats (one per channel) or a 1-D tensor")
    if isinstance(v, (str, bytes)):
        raise TypeError(f"Normalize: {name} must be a float, a sequence of floats (one per "
                        f"channel) or a 1-D tensor, got {type(v).__name__}")
    if isinstance(v, Tensor):
        t = v.detach().to("cpu", torch.float64)
    else:
        try:
            t = torch.as_tensor(v, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"Normalize: {name} must be a float, a sequence of floats (one per "
                            f"channel) or a 1-D tensor, got {v!r}") from None
    if t.ndim == 0:
        t = t.reshape(1)
    if t.ndim != 1 or t.numel() == 0:
        raise ValueError(f"Normalize: {name} must hold one value per channel (a flat, non-empty "
                         f"sequence), got shape {tuple(t.shape)}")
    bad = [i for i, x in enumerate(t.tolist()) if not math.isfinite(x)]
    if bad:
        raise ValueError(f"Normalize: {name} must be finite, got {t.tolist()} (channel {bad[0]})")
    return t


class Normalize(nn.Module):
    """(x - mean) / std per channel: x (B, C, ...) -> (B, C, ...), in x's dtype and device.

    mean, std: one value per channel (C,), or one value for every channel; std > 0.
    The values are float64 buffers that are not saved in the state_dict (they are configuration,
    not weights: the wrapped model's weights load as before).
    """

    mean: Tensor
    std: Tensor

    def __init__(self, mean: Values, std: Values):
        super().__init__()
        m, s = _channel_values("mean", mean), _channel_values("std", std)
        if m.numel() != s.numel() and 1 not in (m.numel(), s.numel()):
            raise ValueError(f"Normalize: mean has {m.numel()} values and std {s.numel()}: give "
                             "both one value per channel (or one value for all channels)")
        bad = [i for i, x in enumerate(s.tolist()) if x <= 0]
        if bad:
            raise ValueError(f"Normalize: std must be > 0 in every channel, got {s.tolist()} "
                             f"(channel {bad[0]})")
        c = max(m.numel(), s.numel())
        # float64, cast to the input's dtype per call: a float64 input keeps every digit given.
        self.register_buffer("mean", m.expand(c).clone(), persistent=False)
        self.register_buffer("std", s.expand(c).clone(), persistent=False)

    @property
    def channels(self) -> int:
        return self.mean.numel()

    def _shaped(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise TypeError(f"Normalize: input must be a floating tensor (B, C, ...), got "
                            f"{x.dtype if isinstance(x, Tensor) else type(x).__name__}")
        c = self.channels
        if x.ndim < 2 or (c > 1 and x.shape[1] != c):
            raise ValueError(f"Normalize: mean/std have {c} channels but the input has shape "
                             f"{tuple(x.shape)} (expected (B, {c}, ...)): pass one mean/std value "
                             "per input channel")
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return (self.mean.to(x.device, x.dtype).reshape(shape),
                self.std.to(x.device, x.dtype).reshape(shape))

    def forward(self, x: Tensor) -> Tensor:
        mean, std = self._shaped(x)
        return (x - mean) / std

    def inverse(self, x: Tensor) -> Tensor:
        """Pixels from normalised inputs: x * std + mean (e.g. to attack a normalised dataset)."""
        mean, std = self._shaped(x)
        return x * std + mean

    def bounds(self, lo: float = 0.0, hi: float = 1.0) -> Tuple[Tensor, Tensor]:
        """(lo (C,), hi (C,)): the per-channel box in normalised units that the pixel box
        [lo, hi] maps to, for code that must work on normalised inputs."""
        return (lo - self.mean) / self.std, (hi - self.mean) / self.std

    def extra_repr(self) -> str:
        def fmt(t: Tensor) -> str:
            return "(" + ", ".join(f"{v:.4g}" for v in t.tolist()) + ")"
        return f"mean={fmt(self.mean)}, std={fmt(self.std)}"


def normalized(model: nn.Module, mean: Values, std: Values) -> nn.Sequential:
    """`model` (which expects normalised inputs) as a model of [0, 1] pixels:
    nn.Sequential(normalize=Normalize(mean, std), model=model)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"normalized: model must be an nn.Module, got {type(model).__name__}")
    return nn.Sequential(OrderedDict(normalize=Normalize(mean, std), model=model))
