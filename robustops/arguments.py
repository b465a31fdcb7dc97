"""Checks of arguments shared by attacks, objectives, models, nn modules, evaluators and ops
(one message each).

Every scalar check raises a TypeError for a wrong type (a str, None, a float where an int
is required, a bool where a number is required) and a ValueError for a value of the right
type out of range or not finite, with the message "<where>: <name> must be <what>, got
<repr>" (where omitted when the caller has none)."""
from __future__ import annotations

import math
import numbers
from typing import Optional

import torch
from torch import Tensor


def require_tensor(op: str, name: str, value, what: str = "a torch.Tensor") -> None:
    """TypeError naming the op and argument unless value is a tensor (a list, a numpy
    array or a number given for a tensor is a wrong type, not a bad value)."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{op}: {name} must be {what}, got {type(value).__name__} "
                        f"(convert it with torch.as_tensor)")


def _label(where: Optional[str], name: str) -> str:
    return f"{where}: {name}" if where else name


def _wrong_type(where: Optional[str], name: str, what: str, value) -> TypeError:
    return TypeError(f"{_label(where, name)} must be {what}, got {value!r} "
                     f"({type(value).__name__})")


def _bad_value(where: Optional[str], name: str, what: str, value) -> ValueError:
    return ValueError(f"{_label(where, name)} must be {what}, got {value!r}")


def require_bool(value, name: str, *, where: Optional[str] = None) -> bool:
    """value if it is a bool, else a TypeError naming `name` (0, 1 and "true" are refused:
    a flag given as a number is usually an argument in the wrong place)."""
    if not isinstance(value, bool):
        raise _wrong_type(where, name, "a bool", value)
    return value


def require_int(value, name: str, *, where: Optional[str] = None, minimum: Optional[int] = None,
                maximum: Optional[int] = None, what: Optional[str] = None) -> int:
    """int(value) if it is an integer (Python's or numpy's; bools refused) in
    [minimum, maximum] (either bound optional): a TypeError for any other type (a float,
    even 3.0, a str, None), a ValueError out of range. `what` overrides the described
    range (e.g. "an int in [0, 2**32)")."""
    if what is None:
        what = ("an int" if minimum is None and maximum is None
                else f"an int >= {minimum}" if maximum is None
                else f"an int <= {maximum}" if minimum is None
                else f"an int in [{minimum}, {maximum}]")
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise _wrong_type(where, name, what, value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise _bad_value(where, name, what, value)
    return int(value)


def positive_int(value, name: str, minimum: int = 1, *, where: Optional[str] = None) -> int:
    """int(value) if it is an int >= minimum (bools refused): TypeError for another type,
    ValueError below minimum."""
    return require_int(value, name, where=where, minimum=minimum)


def _real_range(low, high, low_open: bool, high_open: bool, finite: bool) -> str:
    if low is None and high is None:
        return "a finite number" if finite else "a real number"
    if high is None:
        return f"a finite number {'>' if low_open else '>='} {low}"
    if low is None:
        return f"a finite number {'<' if high_open else '<='} {high}"
    return f"a number in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"


def require_real(value, name: str, *, where: Optional[str] = None, low=None, high=None,
                 low_open: bool = False, high_open: bool = False, finite: bool = True,
                 what: Optional[str] = None) -> float:
    """float(value) if it is a finite real number (an int, a float, numpy's; bools refused)
    between low and high (each optional; closed unless low_open / high_open): a TypeError
    for any other type (a str, a tensor, None), a ValueError for nan, inf (unless
    finite=False: the caller checks them with its own message) or out of range.
    `what` overrides the described range."""
    what = what or _real_range(low, high, low_open, high_open, finite)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _wrong_type(where, name, what, value)
    v = float(value)
    if ((finite and not math.isfinite(v))
            or (low is not None and (v <= low if low_open else v < low))
            or (high is not None and (v >= high if high_open else v > high))):
        raise _bad_value(where, name, what, value)
    return v


def non_negative(value, name: str, *, where: Optional[str] = None) -> float:
    """float(value) if it is a finite real >= 0 (bools refused): TypeError for another
    type, ValueError for nan, inf or a negative."""
    return require_real(value, name, where=where, low=0)


def unit_fraction(value, name: str, *, where: Optional[str] = None) -> float:
    """float(value) if it is a real number in (0, 1] (bools refused): TypeError for
    another type, ValueError outside (0, 1]."""
    return require_real(value, name, where=where, low=0, low_open=True, high=1)


def per_sample_vector(op: str, name: str, t, ref_name: str, ref) -> None:
    """`t` is a (B,) tensor on `ref`'s device, B = ref.shape[0] (a backward op's grad_out
    or saved per-sample value); ValueError naming both otherwise."""
    if t.ndim != 1 or t.shape[0] != ref.shape[0]:
        raise ValueError(f"{op}: {name} must have shape ({ref.shape[0]},), got {tuple(t.shape)}")
    if t.device != ref.device:
        raise ValueError(f"{op}: {name} is on {t.device} but {ref_name} is on {ref.device}; "
                         f"move it with {name}.to({ref_name}.device)")


def check_labels(logits: Tensor, y: Tensor, target: Optional[Tensor] = None) -> None:
    """Refuse labels outside [0, K) for logits (B, K): cross-entropy skips -100 (its
    ignore_index), so such a sample would never be attacked yet be counted. Called once
    per call by attacks, GroupInhibition and the evaluators: a ValueError on CPU, an
    asynchronous device assert on a GPU (no host sync)."""
    k = logits.shape[-1]
    for name, t in (("y", y), ("target", target)):
        if t is None:
            continue
        what = (f"outside [0, {k}) for a model with {k} classes: such a sample would never "
                "be attacked; drop or relabel it")
        if t.device.type == "cpu":
            # Read through numpy: a CPU tensor has no queue to wait for, and SyncCounter
            # (which counts the calls that would sync on a GPU) need not flag this branch.
            labels = t.numpy()
            bad = labels[(labels < 0) | (labels >= k)]
            if bad.size:
                why = " (cross-entropy's ignore_index)" if int(bad[0]) == -100 else ""
                raise ValueError(f"{name} holds the label {int(bad[0])}{why}, {what}")
        else:
            torch._assert_async(((t >= 0) & (t < k)).all(), f"{name} holds labels {what}")
