"""Weights saved by other code: PyTorch `.pt` / `.pth` files, read without running code.

`torch.load(weights_only=True)` reads tensors, dicts, lists and numbers and refuses
anything whose unpickling would call code (a full pickled model, a malicious
`__reduce__`); the refusal becomes a CheckpointError naming what the file holds. The
state_dict is then found where training scripts put it:

- the file itself: {name: tensor};
- nested under ``state_dict``, ``model_state_dict``, ``model``, ``net`` (and a few more,
  STATE_DICT_KEYS), as RobustBench, Lightning and hand-written loops save it;
- with the ``module.`` prefix of DistributedDataParallel / DataParallel and the
  ``_orig_mod.`` prefix of torch.compile stripped.

`fit_state_dict(model, state)` then matches the names to a model (also stripping one
shared wrapper prefix, e.g. Lightning's ``model.``) and says which names are missing or
unexpected, a few of each, instead of load_state_dict's page of names.
"""
from __future__ import annotations

import os
import pathlib
import pickle
import zipfile
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from .checkpoint import CheckpointError

__all__ = ["STATE_DICT_KEYS", "WRAPPER_PREFIXES", "is_torch_file", "load_torch_weights",
           "find_state_dict", "strip_wrapper_prefixes", "match_names", "fit_state_dict"]

PathLike = Union[str, os.PathLike]
# Where training scripts nest the model's state_dict, most specific first.
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model_state", "model", "net",
                   "network", "module", "weights")
# DistributedDataParallel / DataParallel wrap the model as `module`; torch.compile as `_orig_mod`.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_OPTIMIZER_KEYS = ("optimizer", "optimizer_state_dict", "optim", "opt", "optimizer_state")
# Globals whose call runs code: what a malicious pickle reaches for.
_CODE_MODULES = {"os", "posix", "nt", "subprocess", "builtins", "__builtin__", "sys", "shutil",
                 "socket", "importlib", "runpy", "pty", "code", "webbrowser", "ctypes",
                 "pickle", "_pickle", "marshal", "types", "operator", "functools"}
# numpy scalars and dtypes (e.g. a best accuracy saved beside the weights): plain data,
# allowed as torch's documentation suggests.
_NUMPY_DATA = ("numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar", "numpy.dtype")


def is_torch_file(path: PathLike) -> bool:
    """True for a file torch.save wrote: a zip archive (torch >= 1.6) or a raw pickle (older)."""
    with open(path, "rb") as f:
        head = f.read(4)
    # A pickle opens with PROTO (0x80), a protocol number and an opcode (never 0); a
    # safetensors file with its header length (u64 little endian, < 2**24: third byte 0).
    return head == b"PK\x03\x04" or (len(head) == 4 and head[0] == 0x80 and 2 <= head[1] <= 5
                                      and head[2] != 0)


def _unsafe_globals(path: pathlib.Path) -> List[str]:
    """The globals the pickle names that weights_only refuses (read, never called)."""
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:  # a raw (pre-1.6) pickle or a damaged archive: nothing to name
        return []


def _what_refused(names: Sequence[str]) -> str:
    """The file's content in words, from the globals weights_only refused."""
    def module_of(n: str) -> str:
        return n.split(".")[0]

    code = [n for n in names if module_of(n) in _CODE_MODULES]
    if code:
        return (f"a pickle that would run code when loaded (it calls {', '.join(code[:3])}): "
                "refused, as robustops never unpickles code; do not use this file")
    modules = [n for n in names if n.startswith("torch.nn.modules.") or n.startswith("__main__.")
               or n.split(".")[-1][:1].isupper()]
    if modules:
        return (f"a full pickled model object ({', '.join(modules[:3])}; saved with "
                "torch.save(model)), which only its own code can rebuild: load it where that "
                "code is, trusted, and save `model.state_dict()` instead")
    if names:
        return (f"objects weights_only cannot read ({', '.join(names[:3])}), not only tensors: "
                "save the model's `state_dict()` on its own")
    return ("a pickle weights_only cannot read (objects other than tensors, or code to run): "
            "save the model's `state_dict()` on its own")


def load_torch_weights(path: PathLike) -> Dict[str, Tensor]:
    """The model state_dict in a torch.save file (.pt / .pth / .ckpt ...), on the CPU.

    Read with weights_only=True: nothing in the file runs. CheckpointError (naming what
    the file holds) for a full pickled model, a pickle that would run code, a file
    without model weights (e.g. only an optimizer's state), or a damaged file.
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"weights file {path} does not exist")
    extra = []
    unsafe = _unsafe_globals(path)
    if unsafe and all(n in _NUMPY_DATA or n.startswith("numpy.dtypes.") for n in unsafe):
        import numpy as np  # numpy scalars beside the weights: allowed as plain data

        core = getattr(np, "_core", None) or np.core
        # The dtype classes are only named once np.dtype is allowed: the numeric ones, all.
        numeric = [getattr(np.dtypes, n) for n in dir(getattr(np, "dtypes", None))
                   if n.endswith("DType") and n not in ("ObjectDType", "VoidDType", "StringDType")]
        extra = [core.multiarray.scalar, np.dtype] + numeric
    try:
        with torch.serialization.safe_globals(extra):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"weights file {path} holds {_what_refused(unsafe)}") from exc
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"weights file {path} is a damaged or truncated torch.save file "
                              f"({first}); save it again or pick another file") from exc
    return strip_wrapper_prefixes(find_state_dict(obj, str(path)))


def _is_state_dict(obj: Any) -> bool:
    return (isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(k, str) for k in obj)
            and all(isinstance(v, Tensor) for v in obj.values()))


def _some(names: Sequence[Any], n: int = 5) -> str:
    shown = ", ".join(repr(k) for k in list(names)[:n])
    return shown + (f" (+{len(names) - n} more)" if len(names) > n else "")


def find_state_dict(obj: Any, where: str = "the file") -> Dict[str, Tensor]:
    """The {name: tensor} state_dict in a loaded checkpoint: obj itself or nested under one
    of STATE_DICT_KEYS (searched depth-first, at most 3 levels). CheckpointError naming
    what obj is when none is found."""
    def search(o: Any, depth: int) -> Optional[Dict[str, Tensor]]:
        if _is_state_dict(o):
            return dict(o)
        if depth == 0 or not isinstance(o, Mapping):
            return None
        for k in STATE_DICT_KEYS:
            if k in o:
                found = search(o[k], depth - 1)
                if found is not None:
                    return found
        return None

    found = search(obj, 3)
    if found is not None:
        return found
    raise CheckpointError(f"{where} holds no model state_dict: it is {_describe(obj)}")


def _describe(obj: Any) -> str:
    if isinstance(obj, Tensor):
        return f"a single tensor of shape {tuple(obj.shape)}, not a state_dict of named tensors"
    if isinstance(obj, nn.Module):
        return "a full model object; pass its state_dict()"
    if not isinstance(obj, Mapping):
        return f"a {type(obj).__name__}, not a dict of named tensors"
    keys = list(obj)
    if not keys:
        return "an empty dict"
    if ("state" in obj and "param_groups" in obj) or any(k in obj for k in _OPTIMIZER_KEYS):
        return (f"an optimizer checkpoint without model weights (keys {_some(keys)}); save "
                "the model's state_dict too, e.g. under 'model_state_dict'")
    tensors = [k for k in keys if isinstance(obj[k], Tensor)]
    if tensors:
        others = [k for k in keys if not isinstance(obj[k], Tensor)]
        return (f"a dict mixing tensors ({_some(tensors, 3)}) with other values "
                f"({_some(others, 3)}); expected only tensors, or the weights nested under "
                f"one of {', '.join(STATE_DICT_KEYS)}")
    return (f"a dict with keys {_some(keys)} and no tensors; expected the weights, or them "
            f"nested under one of {', '.join(STATE_DICT_KEYS)}")


def _strip_shared(state: Dict[str, Tensor], prefix: str) -> Optional[Dict[str, Tensor]]:
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return None


def strip_wrapper_prefixes(state: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """state with the DDP `module.` and torch.compile `_orig_mod.` prefixes removed (in any
    order, as often as they are stacked) when every name carries them."""
    changed = True
    while changed:
        changed = False
        for p in WRAPPER_PREFIXES:
            stripped = _strip_shared(state, p)
            if stripped is not None:
                state, changed = stripped, True
    return state


def _fit_report(own: Dict[str, Tensor], state: Dict[str, Tensor]) -> List[str]:
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    return [f"{len(missing)} missing ({_some(missing, 3)})" if missing else "",
            f"{len(unexpected)} unexpected ({_some(unexpected, 3)})" if unexpected else "",
            f"{len(shapes)} of another shape ({'; '.join(shapes[:3])})" if shapes else ""]


def match_names(model: nn.Module, state: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """state renamed toward `model`'s state_dict names: wrapper prefixes stripped and, when
    that makes the names fit, one prefix shared by every name (e.g. Lightning's `model.`).
    Names that still do not fit are left as they are (fit_state_dict reports them)."""
    own = model.state_dict()
    state = strip_wrapper_prefixes(dict(state))
    if set(state) != set(own):
        first = {k.split(".", 1)[0] for k in state}
        if len(first) == 1 and all("." in k for k in state):
            stripped = _strip_shared(state, first.pop() + ".")
            if stripped is not None and set(stripped) == set(own):
                state = stripped
    return state


def fit_state_dict(model: nn.Module, state: Mapping[str, Tensor],
                   where: str = "the weights") -> Dict[str, Tensor]:
    """state renamed to fit `model` (see match_names), ready for model.load_state_dict.

    CheckpointError listing a few missing, unexpected and misshapen names otherwise.
    """
    state = match_names(model, state)
    report = [w for w in _fit_report(model.state_dict(), state) if w]
    if report:
        raise CheckpointError(f"{where} do not fit the model ({type(model).__name__}): "
                              + "; ".join(report))
    return state
