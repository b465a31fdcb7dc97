"""Backend choice for robustops ops: auto | reference | cpp | cuda | triton.

- ``reference``: plain PyTorch (any device); the oracle of every test.
- ``cpp``: the C++ CPU kernels of ``robustops._C`` (CPU tensors).
- ``cuda``: the CUDA kernels of ``robustops._C`` (CUDA tensors).
- ``triton``: Triton kernels (CUDA tensors; CPU tensors too when
  ``TRITON_INTERPRET=1`` is set before triton is imported).
- ``auto`` (default): CUDA tensor -> cuda -> triton -> reference;
  CPU tensor -> cpp -> reference.

Choose with ``ROBUSTOPS_BACKEND=<name>`` or, scoped, ``with robustops.backend.use("triton"):``.
An explicitly chosen backend that cannot run a tensor raises instead of falling
back silently.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import importlib.util
import os
import warnings
from typing import Iterator, Optional, Sequence

import torch

NAMES = ("auto", "reference", "cpp", "cuda", "triton")
CONCRETE = NAMES[1:]

_override: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar(
    "robustops_backend", default=None)

_REBUILD_HINT = ("rebuild it with `pip install --no-build-isolation -e .` from the "
                 "robustops checkout (after installing torch); until then the slow "
                 "reference backend is used")


@functools.lru_cache(maxsize=None)
def _load_extension():
    """Import robustops._C once; warn once (with the reason) when it is unusable."""
    try:
        return importlib.import_module("robustops._C"), None
    except Exception as exc:  # ImportError, or an undefined symbol from a torch mismatch
        reason = f"{type(exc).__name__}: {exc}"
        warnings.warn(f"robustops._C could not be imported ({reason}); {_REBUILD_HINT}",
                      RuntimeWarning, stacklevel=3)
        return None, reason


def extension():
    """The compiled module robustops._C, or None (after one warning) if unusable."""
    return _load_extension()[0]


def extension_error() -> Optional[str]:
    """Why robustops._C could not be imported, or None."""
    return _load_extension()[1]


def build_info() -> dict:
    """How robustops._C was built (empty with an ``error`` key when it is missing)."""
    ext = extension()
    if ext is None:
        return {"error": extension_error(), "compiled_backends": []}
    return dict(ext.build_info())


@functools.lru_cache(maxsize=None)
def compiled() -> tuple[str, ...]:
    """Backends compiled into robustops._C ("cpp", and "cuda" for CUDA builds)."""
    return tuple(build_info().get("compiled_backends", ()))


def triton_interpreted() -> bool:
    """True when Triton kernels run on CPU tensors through its interpreter."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@functools.lru_cache(maxsize=None)
def _triton_importable() -> bool:
    return importlib.util.find_spec("triton") is not None


@functools.lru_cache(maxsize=None)
def _cpp_ok() -> bool:
    return "cpp" in compiled()


def _can_run(name: str, device_type: str) -> tuple[bool, str]:
    """Whether backend `name` can run tensors of `device_type`, and why not."""
    if name == "reference":
        return True, ""
    if name == "cpp":
        if "cpp" not in compiled():
            return False, f"robustops._C is not importable ({extension_error()})"
        if device_type != "cpu":
            return False, f"the cpp backend runs CPU tensors, got a {device_type} tensor"
        return True, ""
    if name == "cuda":
        if "cuda" not in compiled():
            return False, ("robustops._C was built without CUDA; rebuild with "
                           "ROBUSTOPS_CUDA=1 CUDA_HOME=/usr/local/cuda")
        if device_type != "cuda":
            return False, f"the cuda backend runs CUDA tensors, got a {device_type} tensor"
        return True, ""
    if name == "triton":
        if not _triton_importable():
            return False, "triton is not installed"
        if device_type == "cuda" or (device_type == "cpu" and triton_interpreted()):
            return True, ""
        return False, ("the triton backend runs CUDA tensors (CPU tensors only with "
                       f"TRITON_INTERPRET=1 set before import), got a {device_type} tensor")
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(NAMES)}")


def available() -> list[str]:
    """Concrete backends this install can run on some device here."""
    out = ["reference"]
    if "cpp" in compiled():
        out.append("cpp")
    if "cuda" in compiled() and torch.cuda.is_available():
        out.append("cuda")
    if _triton_importable() and (torch.cuda.is_available() or triton_interpreted()):
        out.append("triton")
    return out


def _check_name(name: str) -> str:
    name = name.strip().lower()
    if name not in NAMES:
        raise ValueError(f"unknown robustops backend {name!r}; choose one of {', '.join(NAMES)}")
    return name


def current() -> str:
    """The requested backend: the innermost ``use()``, else ROBUSTOPS_BACKEND, else auto."""
    name = _override.get()
    if name is not None:
        return name
    env = os.environ.get("ROBUSTOPS_BACKEND")
    if env:
        try:
            return _check_name(env)
        except ValueError as exc:
            raise ValueError(f"ROBUSTOPS_BACKEND: {exc}") from None
    return "auto"


@contextlib.contextmanager
def use(name: str) -> Iterator[str]:
    """Run the ops inside this block with backend `name` (auto | reference | cpp | cuda | triton)."""
    token = _override.set(_check_name(name))
    try:
        yield name
    finally:
        _override.reset(token)


def cpu_fast_path_ok() -> bool:
    """True when CPU tensors would run on the cpp backend (auto or cpp requested)."""
    name = _override.get()
    if name is None:
        name = os.environ.get("ROBUSTOPS_BACKEND") or "auto"
    return (name == "auto" or name == "cpp") and _cpp_ok()


def resolve(device: torch.device, op: str, supported: Sequence[str] = CONCRETE) -> str:
    """The concrete backend that runs `op` on tensors of `device`.

    Raises RuntimeError when an explicitly chosen backend cannot run it.
    """
    device_type = device.type if isinstance(device, torch.device) else torch.device(device).type
    requested = current()
    if requested == "auto" and device_type == "cpu" and "cpp" in supported and _cpp_ok():
        return "cpp"  # the hot path of every CPU op call: keep it cheap
    if requested == "auto":
        order = ("cuda", "triton", "reference") if device_type == "cuda" else ("cpp", "reference")
        for name in order:
            if name in supported and _can_run(name, device_type)[0]:
                return name
        return "reference"
    if requested not in supported:
        raise RuntimeError(f"robustops.{op} has no {requested!r} backend "
                           f"(it has: {', '.join(supported)})")
    ok, why = _can_run(requested, device_type)
    if not ok:
        raise RuntimeError(f"robustops.{op}: backend {requested!r} cannot run here: {why}. "
                           "Use robustops.backend.use('auto') or another backend.")
    return requested
