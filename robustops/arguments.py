"""Checks of scalar arguments shared by attacks, objectives and models (one message each)."""
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
