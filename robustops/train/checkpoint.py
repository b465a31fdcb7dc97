"""Checkpoints as safetensors + JSON, written atomically, verified on load.

A checkpoint is a folder holding `tensors.safetensors` (every tensor of the state:
model weights, optimizer buffers, RNG state, ...) and `state.json` (everything
else, with `{"__tensor__": key}` where a tensor was, the SHA-256 of the tensors
file, and a SHA-256 `checksum` of state.json's own content). It is written under a
fresh temporary name, fsynced and renamed into place, so a killed run leaves
either the whole checkpoint or none (plus a hidden `.step-*.tmp` folder, which
`remove_stale_temporaries` clears); loading checks both hashes and the shape of
the state, so a truncated, edited or corrupted file gives a CheckpointError
instead of garbage. Nothing is unpickled and no name is looked up beyond the
torch dtypes: loading cannot run code.

Final weights are one `.safetensors` file (`save_weights` / `load_weights`) whose
metadata holds the SHA-256 of its tensors (`robustops.sha256`), verified on load.

`RunFolderLock` keeps two runs from writing one folder: an exclusive `flock` on
`<folder>/.lock`, which the operating system drops when the holding process dies,
so a killed run never leaves a lock behind.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import pathlib
import shutil
import socket
import tempfile
import warnings
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
from torch import Tensor

PathLike = Union[str, os.PathLike]
FORMAT = 3  # 3: state.json carries a checksum of itself (2 had none)
_TENSORS, _STATE = "tensors.safetensors", "state.json"
WEIGHTS_CHECKSUM_KEY = "robustops.sha256"  # in a weights file's safetensors metadata
LOCK_NAME = ".lock"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: missing, truncated, corrupted, edited or foreign."""


class RunFolderInUse(RuntimeError):
    """Another run (another process, or another Trainer of this one) writes the folder."""


# ---------------------------------------------------------------------- state <-> JSON

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


_DTYPES: Dict[str, torch.dtype] = {}


def _dtype(name: Any) -> torch.dtype:
    """The torch dtype called `name`; nothing else (the name is data, not code)."""
    if not _DTYPES:
        _DTYPES.update({n: v for n in dir(torch) if isinstance(v := getattr(torch, n, None), torch.dtype)})
    if not isinstance(name, str) or name not in _DTYPES:
        raise CheckpointError(f"unknown dtype {name!r}")
    return _DTYPES[name]


def _join(obj: Any, tensors: Dict[str, Tensor], where: str = "state") -> Any:
    """The inverse of _split; CheckpointError (naming the place) for anything _split never writes."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if not isinstance(obj, dict):
        raise CheckpointError(f"unexpected {type(obj).__name__} at {where}")
    keys = set(obj)
    if keys == {"__tensor__"}:
        key = obj["__tensor__"]
        if not isinstance(key, str) or key not in tensors:
            raise CheckpointError(f"{where} names tensor {key!r}, which {_TENSORS} lacks")
        return tensors[key]
    if keys == {"__dict__"} and isinstance(obj["__dict__"], list):
        out = {}
        for item in obj["__dict__"]:
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], (str, int))
                    and not isinstance(item[0], bool)):
                raise CheckpointError(f"malformed dict entry at {where}: {str(item)[:80]}")
            out[item[0]] = _join(item[1], tensors, f"{where}.{item[0]}")
        return out
    if keys in ({"__list__", "tuple"}, {"__list__"}) and isinstance(obj["__list__"], list) \
            and isinstance(obj.get("tuple", False), bool):
        items = [_join(v, tensors, f"{where}.{i}") for i, v in enumerate(obj["__list__"])]
        return tuple(items) if obj.get("tuple") else items
    if keys == {"__dtype__"}:
        try:
            return _dtype(obj["__dtype__"])
        except CheckpointError as exc:
            raise CheckpointError(f"{exc} at {where}") from None
    raise CheckpointError(f"unknown entry at {where}: {sorted(keys)[:5]}")


def _canonical(doc: Dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=True).encode()


def _doc_checksum(doc: Dict[str, Any]) -> str:
    """SHA-256 of state.json's content, less its own `checksum` entry (whitespace-blind)."""
    return hashlib.sha256(_canonical({k: v for k, v in doc.items() if k != "checksum"})).hexdigest()


# ---------------------------------------------------------------------- files

def _storable(tensors: Dict[str, Tensor]) -> Dict[str, Tensor]:
    # safetensors refuses tensors sharing memory (tied weights, views): give each its own.
    out, seen = {}, set()
    for k, t in tensors.items():
        t = t.detach().to("cpu").resolve_conj().resolve_neg()
        ptr = (t.untyped_storage().data_ptr(), t.storage_offset()) if t.numel() else None
        if ptr in seen or not t.is_contiguous():
            t = t.clone(memory_format=torch.contiguous_format)
        if ptr is not None:
            seen.add(ptr)
        out[k] = t.contiguous()
    return out


def tensors_sha256(tensors: Dict[str, Tensor]) -> str:
    """SHA-256 of a state_dict: names, dtypes, shapes and bytes, in name order."""
    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k].detach().to("cpu").resolve_conj().resolve_neg().contiguous()
        h.update(json.dumps([k, str(t.dtype), list(t.shape)]).encode() + b"\0")
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


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
    # Only ever called on a path inside a fresh mkdtemp folder (mode 0700, a name nobody
    # could have planted), so opening it by name cannot follow a planted link.
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    try:
        save_file(_storable(tensors), str(path), metadata=metadata)
    except SafetensorError as exc:
        # safetensors reports a failed write (disk full, file too large, quota) as its own
        # error: make it the OSError every other write raises (the CLI: one line, exit 1).
        raise OSError(f"cannot write {path}: {exc}") from exc
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically and safely: a fresh temporary file beside it
    (mkstemp: O_CREAT | O_EXCL, a random name, so a planted file or symlink is never
    followed), fsynced, renamed over `path` (which replaces a link at `path`, not its target)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(f.fileno(), 0o666 & ~umask)  # the mode open() would give (mkstemp: 0600)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: PathLike, text: str) -> None:
    """atomic_write_bytes for text (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


# ---------------------------------------------------------------------- checkpoints

def save_checkpoint(state: Dict[str, Any], folder: PathLike) -> pathlib.Path:
    """Write `state` (nested dicts/lists of tensors and JSON data) as a checkpoint folder,
    atomically: a fresh temporary folder beside it, renamed into place when complete."""
    folder = pathlib.Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        tensors: Dict[str, Tensor] = {}
        skeleton = _split(state, tensors, "")
        _write_tensors(tensors, tmp / _TENSORS)
        doc = {"format": FORMAT, "sha256": _sha256(tmp / _TENSORS), "state": skeleton}
        doc["checksum"] = _doc_checksum(doc)
        with open(tmp / _STATE, "x") as f:
            json.dump(doc, f)
            f.flush()
            os.fsync(f.fileno())
        if folder.exists() or folder.is_symlink():  # same name again: replace it whole
            old = folder.with_name(f".{folder.name}.old")
            _remove(old)
            os.replace(folder, old)
            os.replace(tmp, folder)
            _remove(old)
        else:
            os.replace(tmp, folder)
        _fsync_dir(folder.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def load_checkpoint(folder: PathLike) -> Dict[str, Any]:
    """The state saved by save_checkpoint, tensors on CPU; CheckpointError (with what is
    wrong) for a missing, truncated, corrupted, edited or foreign checkpoint."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint {folder} does not exist (expected a folder with "
                              f"{_TENSORS} and {_STATE})")
    spath = folder / _STATE
    try:
        doc = json.loads(spath.read_bytes().decode("utf-8"))
    except FileNotFoundError as exc:
        raise CheckpointError(f"checkpoint {folder} has no {_STATE}: incomplete") from exc
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError
        raise CheckpointError(f"checkpoint {spath} is corrupt or truncated ({exc})") from exc
    except OSError as exc:
        raise CheckpointError(f"checkpoint {spath} cannot be read ({exc})") from exc
    if not isinstance(doc, dict) or "state" not in doc or "format" not in doc:
        raise CheckpointError(f"{folder} is not a robustops checkpoint (format {FORMAT})")
    if doc.get("format") != FORMAT:
        raise CheckpointError(f"{folder} is a robustops checkpoint of format {doc.get('format')!r}, "
                              f"this version reads format {FORMAT} (whose {_STATE} is checksummed); "
                              "resume it with the robustops that wrote it, or delete it")
    if doc.get("checksum") != _doc_checksum(doc):
        raise CheckpointError(f"checkpoint {spath} is corrupt or was edited (its SHA-256 differs "
                              "from the checksum it records)")
    tpath = folder / _TENSORS
    if not tpath.is_file():
        raise CheckpointError(f"checkpoint {folder} has no {_TENSORS}: incomplete")
    try:
        digest = _sha256(tpath)
    except OSError as exc:
        raise CheckpointError(f"checkpoint {tpath} cannot be read ({exc})") from exc
    if digest != doc.get("sha256"):
        raise CheckpointError(f"checkpoint {tpath} is corrupt or truncated (SHA-256 differs from "
                              f"the one recorded in {_STATE})")
    try:
        tensors = load_file(str(tpath))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {tpath} cannot be read ({exc})") from exc
    try:
        return _join(doc["state"], tensors)
    except CheckpointError as exc:
        raise CheckpointError(f"checkpoint {spath}: {exc}") from None
    except RecursionError as exc:
        raise CheckpointError(f"checkpoint {spath} is nested too deeply") from exc


def checkpoint_folders(root: PathLike) -> List[Tuple[int, pathlib.Path]]:
    """(step, folder) of the checkpoints `step-N` under root, newest first."""
    root = pathlib.Path(root)
    out = []
    if root.is_dir():
        for p in root.iterdir():
            if p.name.startswith("step-") and p.name[5:].isdigit() and p.is_dir():
                out.append((int(p.name[5:]), p))
    return sorted(out, reverse=True)


def _remove(path: pathlib.Path) -> None:
    """Remove a file, a link (not its target) or a folder; nothing if absent."""
    try:
        if path.is_symlink() or not path.is_dir():
            path.unlink()
        else:
            shutil.rmtree(path)
    except FileNotFoundError:
        pass


# Files of a run folder written through atomic_write_* (temporaries: .NAME.<random>.tmp),
# and the fixed temporary names older code used (a link planted there would be followed).
_RUN_FILES = ("model.safetensors", "metrics.jsonl", "config.toml")
_LEGACY_TEMPORARIES = ("config.toml.tmp", "metrics.tmp")


def remove_stale_temporaries(out_dir: PathLike) -> List[pathlib.Path]:
    """Clear what killed runs leave in a run folder; call it holding the folder's lock.

    checkpoints/.step-N.*.tmp (a save cut short) is removed; checkpoints/.step-N.old (a
    re-save cut short between its two renames) is moved back to step-N if step-N is
    missing, else removed; the temporaries of atomic writes (.model.safetensors.*.tmp,
    .metrics.jsonl.*.tmp, .config.toml.*.tmp) and the fixed names config.toml.tmp and
    metrics.tmp are removed (links themselves, never their targets). Returns what was
    removed or restored.
    """
    out_dir = pathlib.Path(out_dir)
    done: List[pathlib.Path] = []
    root = out_dir / "checkpoints"
    if root.is_dir():
        for p in sorted(root.iterdir()):
            name = p.name
            if name.startswith(".step-") and name.endswith(".tmp"):
                _remove(p)
                done.append(p)
            elif name.startswith(".step-") and name.endswith(".old"):
                target = root / name[1:-4]
                if (target.name[5:].isdigit() and not target.exists() and not target.is_symlink()
                        and p.is_dir() and not p.is_symlink()):
                    os.replace(p, target)  # the complete checkpoint a kill left aside
                else:
                    _remove(p)
                done.append(p)
    if out_dir.is_dir():
        for p in sorted(out_dir.iterdir()):
            name = p.name
            ours = any(name.startswith(f".{f}.") for f in _RUN_FILES) and name.endswith(".tmp")
            if (ours and (p.is_symlink() or not p.is_dir())) or name in _LEGACY_TEMPORARIES:
                _remove(p)
                done.append(p)
    return done


# ---------------------------------------------------------------------- final weights

def save_weights(state_dict: Dict[str, Tensor], path: PathLike, metadata: Dict[str, str] = None) -> None:
    """A model's state_dict as one .safetensors file, written atomically; its metadata
    holds the SHA-256 of the tensors (`robustops.sha256`), which load_weights verifies."""
    from safetensors.torch import save

    tensors = _storable(dict(state_dict))
    meta = dict(metadata or {})
    meta[WEIGHTS_CHECKSUM_KEY] = tensors_sha256(tensors)
    atomic_write_bytes(path, save(tensors, metadata=meta))


def load_weights(path: PathLike) -> Dict[str, Tensor]:
    """A state_dict from a .safetensors file (or from a checkpoint folder's model entry, or
    from a torch.save file such as a .pt / .pth: see robustops.train.foreign_checkpoints).

    CheckpointError for a file that is not safetensors, truncated, or whose tensors differ
    from the checksum in its metadata. A file without that checksum (written elsewhere)
    loads with a warning that it could not be verified.
    """
    from safetensors import SafetensorError, safe_open

    path = pathlib.Path(path)
    if path.is_dir():
        state = load_checkpoint(path)
        model = state.get("model") if isinstance(state, dict) else None
        if not isinstance(model, dict) or not all(isinstance(v, Tensor) for v in model.values()):
            raise CheckpointError(f"checkpoint {path} holds no model weights")
        return model
    if not path.exists():
        raise FileNotFoundError(f"weights file {path} does not exist")
    from .foreign_checkpoints import is_torch_file, load_torch_weights

    if is_torch_file(path):  # read with weights_only=True: no code runs
        return load_torch_weights(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"weights file {path} is corrupt, truncated or not safetensors "
                              f"({exc}); train again or pick another file") from exc
    recorded = meta.get(WEIGHTS_CHECKSUM_KEY)
    if recorded is None:
        warnings.warn(f"weights file {path} has no {WEIGHTS_CHECKSUM_KEY} checksum (written elsewhere "
                      "or by an older robustops): its contents cannot be verified", stacklevel=2)
    elif recorded != tensors_sha256(tensors):
        raise CheckpointError(f"weights file {path} is corrupt (its tensors' SHA-256 differs from "
                              f"the {WEIGHTS_CHECKSUM_KEY} it records); train again or pick another file")
    return tensors


# ---------------------------------------------------------------------- run-folder lock

class RunFolderLock:
    """An exclusive lock on a run folder for this process: `flock` on `<folder>/.lock`.

    acquire() raises RunFolderInUse when another process holds it (naming its pid and
    host). The lock belongs to the open file, so the OS releases it when the process
    exits or is killed: a stale lock file is simply taken over. Where fcntl is missing
    (Windows) there is no lock. The file is opened with O_NOFOLLOW: a planted link fails.
    """

    def __init__(self, folder: PathLike):
        self.folder = pathlib.Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: Optional[int] = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "RunFolderLock":
        if self._fd is not None:
            return self
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self.path, flags, 0o644)
        except OSError as exc:
            why = "it is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
            raise RunFolderInUse(f"cannot open the lock file {self.path} ({why}); remove it or "
                                 "choose another output folder") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            try:
                holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
            finally:
                os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RunFolderInUse(
                    f"{self.folder} is in use by another run ({holder}): two runs writing one "
                    "folder would mix their checkpoints and metrics. Wait for it to finish, stop "
                    "it, or choose another output folder") from None
            raise RunFolderInUse(f"cannot lock {self.path} ({exc.strerror})") from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # drops the flock; the file stays (unlinking it would race)

    def __enter__(self) -> "RunFolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
