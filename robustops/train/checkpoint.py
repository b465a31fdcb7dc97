"""Atomic checkpoints: a killed run never leaves a half-written file behind."""
from __future__ import annotations

import os
import pathlib
import pickle
import tempfile
from typing import Any, Union

import torch

PathLike = Union[str, os.PathLike]


def save_atomic(obj: Any, path: PathLike) -> None:
    """torch.save to a temporary file in the same folder, fsync, then rename over `path`."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_checkpoint(path: PathLike) -> Any:
    """torch.load(weights_only=True) on CPU, with a clear error for a corrupt file."""
    path = pathlib.Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except (RuntimeError, EOFError, pickle.UnpicklingError, ValueError, OSError) as exc:
        raise RuntimeError(f"checkpoint {path} is corrupt or not a robustops checkpoint "
                           f"({type(exc).__name__}: {exc}); delete it to start over") from exc
