"""Checks of scalar arguments shared by attacks, objectives and models (one message each)."""
from __future__ import annotations

import math


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
