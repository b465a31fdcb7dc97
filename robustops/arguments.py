"""Checks of arguments shared by attacks, objectives, models and ops (one message each)."""
from __future__ import annotations

import math
import numbers


def positive_int(value, name: str, minimum: int = 1) -> int:
    """value if it is an int >= minimum (bools refused), else a ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def non_negative(value, name: str) -> float:
    """float(value) if it is a finite real >= 0 (bools refused), else a ValueError."""
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or value < 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def unit_fraction(value, name: str) -> float:
    """float(value) if it is a real number in (0, 1] (bools refused), else a ValueError."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not math.isfinite(value) or not 0 < value <= 1):
        raise ValueError(f"{name} must be a number in (0, 1], got {value!r}")
    return float(value)


def per_sample_vector(op: str, name: str, t, ref_name: str, ref) -> None:
    """`t` is a (B,) tensor on `ref`'s device, B = ref.shape[0] (a backward op's grad_out
    or saved per-sample value); ValueError naming both otherwise."""
    if t.ndim != 1 or t.shape[0] != ref.shape[0]:
        raise ValueError(f"{op}: {name} must have shape ({ref.shape[0]},), got {tuple(t.shape)}")
    if t.device != ref.device:
        raise ValueError(f"{op}: {name} is on {t.device} but {ref_name} is on {ref.device}; "
                         f"move it with {name}.to({ref_name}.device)")
