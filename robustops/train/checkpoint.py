"""Checkpoints as safetensors + JSON, written atomically, verified on load.

A checkpoint is a folder holding `tensors.safetensors` (every tensor of the state:
model weights, optimizer buffers, RNG state, ...) and `state.json` (everything
else, with `{"__tensor__": key}` where a tensor was, plus the SHA-256 of the
tensors file). It is written under a temporary name, fsynced and renamed into
place, so a killed run leaves either the whole checkpoint or none; loading checks
the hash, so a truncated or corrupted file gives a clear error instead of garbage.
Nothing is unpickled: loading cannot run code.

Final weights are one `.safetensors` file (`save_weights` / `load_weights`).
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import tempfile
from typing import Any, Dict, List, Tuple, Union

import torch
from torch import Tensor

PathLike = Union[str, os.PathLike]
FORMAT = 2
_TENSORS, _STATE = "tensors.safetensors", "state.json"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: missing, truncated, corrupted or foreign."""


def _split(obj: Any, tensors: Dict[str, Tensor], path: str) -> Any:
    """obj with every tensor replaced by {"__tensor__": key}; the tensors go to `tensors`."""
    if isinstance(obj, Tensor):
        key = path or "root"
        tensors[key] = obj
        return {"__tensor__": key}
    if isinstance(obj, dict):
        if not all(isinstance(k, (str, int)) for k in obj):
            raise TypeError(f"checkpoint state at {path or 'root'} has non-str/int keys")
        # JSON keys are strings: remember which were ints (optimizer state is keyed by int).
        return {"__dict__": [[k, _split(v, tensors, f"{path}.{k}" if path else str(k))]
                             for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return {"__list__": [_split(v, tensors, f"{path}.{i}" if path else str(i))
                             for i, v in enumerate(obj)], "tuple": isinstance(obj, tuple)}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, torch.dtype):
        return {"__dtype__": str(obj).replace("torch.", "")}
    raise TypeError(f"checkpoint state at {path or 'root'} holds a {type(obj).__name__}, which "
                    "is neither a tensor nor JSON data")


def _join(obj: Any, tensors: Dict[str, Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__dict__" in obj:
            return {k: _join(v, tensors) for k, v in obj["__dict__"]}
        if "__list__" in obj:
            items = [_join(v, tensors) for v in obj["__list__"]]
            return tuple(items) if obj.get("tuple") else items
        if "__dtype__" in obj:
            return getattr(torch, obj["__dtype__"])
        raise CheckpointError(f"unknown entry in a checkpoint's state.json: {sorted(obj)}")
    return obj


def _storable(tensors: Dict[str, Tensor]) -> Dict[str, Tensor]:
    # safetensors refuses tensors sharing memory (tied weights, views): give each its own.
    out, seen = {}, set()
    for k, t in tensors.items():
        t = t.detach().to("cpu")
        ptr = (t.untyped_storage().data_ptr(), t.storage_offset()) if t.numel() else None
        if ptr in seen or not t.is_contiguous():
            t = t.clone(memory_format=torch.contiguous_format)
        if ptr is not None:
            seen.add(ptr)
        out[k] = t.contiguous()
    return out


def _sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: pathlib.Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_tensors(tensors: Dict[str, Tensor], path: pathlib.Path, metadata=None) -> None:
    from safetensors.torch import save_file

    save_file(_storable(tensors), str(path), metadata=metadata)
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def save_checkpoint(state: Dict[str, Any], folder: PathLike) -> pathlib.Path:
    """Write `state` (nested dicts/lists of tensors and JSON data) as a checkpoint folder,
    atomically: a temporary folder beside it, renamed into place when complete."""
    folder = pathlib.Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        tensors: Dict[str, Tensor] = {}
        skeleton = _split(state, tensors, "")
        _write_tensors(tensors, tmp / _TENSORS)
        doc = {"format": FORMAT, "sha256": _sha256(tmp / _TENSORS), "state": skeleton}
        with open(tmp / _STATE, "w") as f:
            json.dump(doc, f)
            f.flush()
            os.fsync(f.fileno())
        if folder.exists():  # same name again (e.g. re-saved at one step): replace it whole
            old = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
        _fsync_dir(folder.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def load_checkpoint(folder: PathLike) -> Dict[str, Any]:
    """The state saved by save_checkpoint, tensors on CPU; CheckpointError (with what is
    wrong) for a missing, truncated, corrupted or foreign checkpoint."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint {folder} does not exist (expected a folder with "
                              f"{_TENSORS} and {_STATE})")
    try:
        doc = json.loads((folder / _STATE).read_text())
    except FileNotFoundError as exc:
        raise CheckpointError(f"checkpoint {folder} has no {_STATE}: incomplete") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"checkpoint {folder}/{_STATE} is corrupt or truncated ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or "state" not in doc:
        raise CheckpointError(f"{folder} is not a robustops checkpoint (format {FORMAT})")
    tpath = folder / _TENSORS
    if not tpath.exists():
        raise CheckpointError(f"checkpoint {folder} has no {_TENSORS}: incomplete")
    if _sha256(tpath) != doc.get("sha256"):
        raise CheckpointError(f"checkpoint {tpath} is corrupt or truncated (SHA-256 differs from "
                              f"the one recorded in {_STATE})")
    try:
        tensors = load_file(str(tpath))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {tpath} cannot be read ({exc})") from exc
    try:
        return _join(doc["state"], tensors)
    except KeyError as exc:
        raise CheckpointError(f"checkpoint {folder}: {_STATE} names tensor {exc} that "
                              f"{_TENSORS} lacks") from exc


def save_weights(state_dict: Dict[str, Tensor], path: PathLike, metadata: Dict[str, str] = None) -> None:
    """A model's state_dict as one .safetensors file, written atomically."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        _write_tensors(dict(state_dict), pathlib.Path(tmp), metadata)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_weights(path: PathLike) -> Dict[str, Tensor]:
    """A state_dict from a .safetensors file (or from a checkpoint folder's model entry)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = pathlib.Path(path)
    if path.is_dir():
        state = load_checkpoint(path)
        if not isinstance(state, dict) or "model" not in state:
            raise CheckpointError(f"checkpoint {path} holds no model weights")
        return state["model"]
    if not path.exists():
        raise FileNotFoundError(f"weights file {path} does not exist")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"weights file {path} is corrupt, truncated or not safetensors "
                              f"({exc}); train again or pick another file") from exc


def checkpoint_folders(root: PathLike) -> List[Tuple[int, pathlib.Path]]:
    """(step, folder) of the checkpoints `step-N` under root, newest first."""
    root = pathlib.Path(root)
    out = []
    if root.is_dir():
        for p in root.iterdir():
            if p.is_dir() and p.name.startswith("step-") and p.name[5:].isdigit():
                out.append((int(p.name[5:]), p))
    return sorted(out, reverse=True)
