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
import glob
import importlib
import importlib.util
import os
import warnings
from typing import Iterator, Optional, Sequence

import torch

from . import extension_check

NAMES = ("auto", "reference", "cpp", "cuda", "triton")
CONCRETE = NAMES[1:]

_override: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar(
    "robustops_backend", default=None)

_REBUILD_HINT = f"{extension_check.REBUILD}; until then the slow reference backend is used"


def ops_library_path() -> Optional[str]:
    """Path of robustops' op library (``robustops/_ops*.so``: every kernel and op
    registration, no Python inside), or None when it was not built.

    A C++ program (e.g. one running an AOTInductor package) dlopen()s this file to
    get the ``robustops::`` ops; Python loads the same file.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    found = sorted(glob.glob(os.path.join(here, "_ops*.so")) + glob.glob(os.path.join(here, "_ops*.pyd")))
    return found[0] if found else None


@functools.lru_cache(maxsize=None)
def _load_extension():
    """Load the op library and import robustops._C once; warn once (with the reason)
    when they are unusable."""
    try:
        path = ops_library_path()
        if path is None:
            raise ImportError("robustops/_ops*.so (the op library) was not built")
        # Before loading: a library built for another torch release may not even fail cleanly.
        mismatch = extension_check.torch_mismatch(extension_check.built_torch_version(),
                                                  torch.__version__)
        if mismatch:
            raise ImportError(mismatch)
        torch.ops.load_library(path)  # registers every robustops:: op and kernel
        return importlib.import_module("robustops._C"), None
    except Exception as exc:  # OSError/ImportError, or an undefined symbol from a torch mismatch
        reason = f"{type(exc).__name__}: {exc}"
        warnings.warn(f"robustops' compiled ops could not be loaded ({reason}); {_REBUILD_HINT}",
                      RuntimeWarning, stacklevel=3)
        return None, reason


def native_ops_loaded() -> bool:
    """True when the ``torch.ops.robustops`` kernels of the op library are registered.

    The op modules call this at import, which also fixes resolve()'s auto choice for CPU
    tensors (so torch.compile never traces the extension loading).
    """
    global _auto_cpu, _native_everywhere
    loaded = _load_extension()[0] is not None
    if _auto_cpu is None:
        _auto_cpu = "cpp" if _cpp_ok() else "reference"
        # CUDA tensors exist only with a GPU; without CUDA kernels built they need triton.
        _native_everywhere = _auto_cpu == "cpp" and (
            "cuda" in compiled() or not torch.cuda.is_available())
    return loaded


def native_op(name: str, fakes: dict):
    """(OpOverload, raw builtin) of ``torch.ops.robustops.<name>`` after registering the
    Python fake kernels in `fakes` ({op name: fake kernel}); (None, None) without the op
    library (then the reference backend runs everything).

    Called at import by robustops/ops/<op>.py, the module each op's C++ schema names
    (set_python_module) as the home of its fake kernels. Public functions call the raw
    builtin in eager code (no OpOverload.__call__ frame, ~0.3 us) and the OpOverload
    while torch.compile or torch.export trace (they cannot see into the builtin):
    ``(_OP if is_compiling() else _OP_EAGER)(...)``.
    """
    if not native_ops_loaded():
        return None, None
    for op, fake in fakes.items():
        # _stacklevel=2: the fake kernels belong to the calling op module (its pystub).
        torch.library.register_fake(f"robustops::{op}", fake, _stacklevel=2)
    overload = getattr(torch.ops.robustops, name).default
    return overload, overload._op


# True when the op library runs every device present here (set by native_ops_loaded).
_native_everywhere = False


def native_auto() -> bool:
    """True when an op that has CPU and CUDA kernels runs its C++ op for any tensor: the
    auto backend (no use(), no ROBUSTOPS_BACKEND) and an op library covering every device
    present. The first test of every public op call, with no device lookup (python_path
    with it measured 0.48 us on a loaded machine, resolve() alone 0.56 us).
    """
    # (_no_choice_made() inlined: a call per op call is measurable here.)
    if _ENV_DATA is not None and _ENV_KEY is not None:
        return _native_everywhere and _override.get() is None and _ENV_KEY not in _ENV_DATA
    return _native_everywhere and _override.get() is None and _env_backend() is None


def _no_choice_made() -> bool:
    """True when neither use() nor ROBUSTOPS_BACKEND chose a backend (the auto choice)."""
    if _ENV_DATA is not None and _ENV_KEY is not None:  # POSIX: skip a call per op call
        return _override.get() is None and _ENV_KEY not in _ENV_DATA
    return _override.get() is None and _env_backend() is None


def python_path(t: torch.Tensor, op: str, supported: Sequence[str] = CONCRETE) -> Optional[str]:
    """None when ``torch.ops.robustops.<op>`` (its cpp or cuda kernel) runs a call whose
    leading tensor is `t`; else the Python-side backend to run: "triton" or "reference".

    Every public op calls this first. The auto choice costs one native_auto(); an op
    without a CUDA kernel ("cuda" not in `supported`) also looks at t's device.
    """
    if "cuda" in supported:
        if native_auto():
            return None
    elif _auto_cpu == "cpp" and t.is_cpu and _no_choice_made():
        return None  # an op with only a CPU kernel (t.is_cpu: no torch.device object built)
    name = resolve(t.device, op, supported)
    return None if name == "cpp" or name == "cuda" else name


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


# os.environ's own mapping (bytes keys on POSIX): reading it directly measured 0.085 us
# against 0.91 us for os.environ.get, which encodes the key on every call, and
# current() runs on every op call.
_ENV_DATA = getattr(os.environ, "_data", None)
_ENV_KEY = os.environ.encodekey("ROBUSTOPS_BACKEND") if hasattr(os.environ, "encodekey") else None


def _env_backend() -> Optional[str]:
    if _ENV_DATA is None or _ENV_KEY is None:
        return os.environ.get("ROBUSTOPS_BACKEND")
    raw = _ENV_DATA.get(_ENV_KEY)
    return None if raw is None else os.environ.decodevalue(raw)


def current() -> str:
    """The requested backend: the innermost ``use()``, else ROBUSTOPS_BACKEND, else auto."""
    name = _override.get()
    if name is not None:
        return name
    env = _env_backend()
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


# Set once the op library is known to be loaded: the auto choice for CPU tensors.
_auto_cpu: Optional[str] = None


def resolve(device: torch.device, op: str, supported: Sequence[str] = CONCRETE) -> str:
    """The concrete backend that runs `op` on tensors of `device`.

    Raises RuntimeError when an explicitly chosen backend cannot run it. Public ops call
    python_path(), which settles the common auto case before this runs.
    """
    device_type = device.type if isinstance(device, torch.device) else torch.device(device).type
    requested = current()
    if requested == "auto":
        if device_type == "cpu" and "cpp" in supported:
            if _auto_cpu is None:
                native_ops_loaded()
            return _auto_cpu  # fixed at import: torch.compile never traces the loading
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
