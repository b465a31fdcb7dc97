"""SyncCounter: count the host-device synchronisations a block of PyTorch code would make.

On a GPU, every op that hands a tensor's *value* to the host (``t.item()``,
``bool(t.any())``, ``if t:``, ``t.nonzero()``, boolean-mask indexing, ``t.cpu()``)
waits for the launch queue to drain: the host stops queueing kernels, and the GPU
idles until it queues more. Such calls are easy to add and invisible in a CPU
profile, so robustops pins their number in its hot loops with this counter
(tests/sync/), and users can profile their own loops with it::

    from robustops.sync_counter import SyncCounter

    with SyncCounter() as syncs:
        train_some_steps()
    print(syncs.count, syncs.counts)   # total, and per kind
    print(syncs.summary())             # one line per (kind, op, place in the code)

It works on any machine, CPU included: the calls that sync on a GPU are counted on
CPU tensors too, since they are the same calls (a CPU run predicts a GPU run's
syncs, give or take reads in code that runs on CPU tensors only, such as a data
loader's seed draw or a CPU-only input check). It sees the ops that reach the
dispatcher, and ``t.tolist()`` (patched on torch.Tensor while a counter is active,
since on a CPU tensor it reads without dispatching). Not seen: C++ code inside a
custom op, and ``t.numpy()`` (CPU tensors only: code calling it is CPU-only code).
A host-to-device copy with ``non_blocking=False`` also waits for the stream on a GPU
(kind 'host_to_device'); a CPU run has no such copy, so only a GPU run counts it.
"""
from __future__ import annotations

import collections
import os
import sys
from typing import Counter, Dict, List, NamedTuple, Optional

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["SyncCounter", "SyncEvent", "SYNC_KINDS"]

# Kind of sync for each op that always makes one (keyed by the op's overload packet name).
_ALWAYS: Dict[str, str] = {
    "_local_scalar_dense": "item",  # t.item(), float(t), bool(t), if t: (all end here)
    "item": "item",
    "is_nonzero": "is_nonzero",
    "nonzero": "nonzero",  # also torch.where(mask), argwhere
    "masked_select": "data_dependent_shape",
    "_unique": "data_dependent_shape",
    "_unique2": "data_dependent_shape",
    "unique_dim": "data_dependent_shape",
    "unique_consecutive": "data_dependent_shape",
    "equal": "equal",  # torch.equal returns a Python bool
    "allclose": "equal",
}
SYNC_KINDS = ("item", "is_nonzero", "nonzero", "data_dependent_shape", "equal", "tolist",
              "device_to_host", "host_to_device")

_TORCH_DIR = os.path.dirname(torch.__file__)
_THIS_FILE = os.path.abspath(__file__)


class SyncEvent(NamedTuple):
    """One sync: its kind (one of SYNC_KINDS), the aten op, and where the code called it."""

    kind: str
    op: str
    where: str


def _is_mask(t) -> bool:
    return isinstance(t, torch.Tensor) and t.dtype in (torch.bool, torch.uint8)


def _is_host(device) -> bool:
    return device is not None and torch.device(device).type == "cpu"


def _sync_kind(func, args, kwargs) -> Optional[str]:
    """The kind of sync `func(*args, **kwargs)` makes on a GPU, or None."""
    name = func.overloadpacket.__name__
    kind = _ALWAYS.get(name)
    if kind is not None:
        return kind
    if name == "index" and len(args) > 1:
        # Boolean-mask indexing: the result's size is the mask's count (a nonzero inside).
        if any(_is_mask(i) for i in args[1]):
            return "data_dependent_shape"
    elif name in ("index_put", "index_put_", "_index_put_impl_") and len(args) > 2:
        indices, value = args[1], args[2]
        masks = [i for i in indices if _is_mask(i)]
        # One mask with a one-element value runs as masked_fill (no sync); else a nonzero.
        if masks and not (len(indices) == 1 and value.numel() == 1):
            return "data_dependent_shape"
    elif name == "repeat_interleave":
        # Tensor repeats without output_size: the output size is summed on the host.
        if func._overloadname in ("Tensor", "self_Tensor") and kwargs.get("output_size") is None:
            return "data_dependent_shape"
    elif name == "_to_copy" and args and isinstance(args[0], torch.Tensor):
        src, dst = args[0].device, kwargs.get("device")
        return _copy_kind(src, dst, kwargs.get("non_blocking", False))
    elif name == "copy_" and len(args) > 1 and isinstance(args[1], torch.Tensor):
        non_blocking = args[2] if len(args) > 2 else kwargs.get("non_blocking", False)
        return _copy_kind(args[1].device, args[0].device, non_blocking)
    return None


def _copy_kind(src, dst, non_blocking) -> Optional[str]:
    """'device_to_host' for any copy to the CPU from a device; 'host_to_device' for a
    blocking copy from the CPU to a device (PyTorch waits for the stream after it)."""
    if dst is None:
        return None
    if not _is_host(src) and _is_host(dst):
        return "device_to_host"
    if _is_host(src) and not _is_host(dst) and torch.device(dst).type != "meta" and not non_blocking:
        return "host_to_device"
    return None


def _caller() -> str:
    """'file.py:line in function' of the innermost frame outside torch and this module."""
    frame = sys._getframe(2)
    while frame is not None:
        path = os.path.abspath(frame.f_code.co_filename)
        if not path.startswith(_TORCH_DIR) and path != _THIS_FILE:
            short = os.sep.join(path.split(os.sep)[-2:])
            return f"{short}:{frame.f_lineno} in {frame.f_code.co_name}"
        frame = frame.f_back
    return "<unknown>"


class SyncCounter(TorchDispatchMode):
    """Context manager counting host-device syncs (see module docstring).

    Attributes, live during the block and final after it:
      count:  total number of syncs;
      counts: {kind: number} for the kinds in SYNC_KINDS that occurred;
      events: [SyncEvent(kind, op, where)] in call order (`where`: the innermost
              Python frame outside torch, 'folder/file.py:line in function').
    Nesting is allowed (each counter sees the syncs of its own block).
    """

    def __init__(self):
        super().__init__()
        self.events: List[SyncEvent] = []
        self._saved_tolist = None

    def __enter__(self):
        # Tensor.tolist reads a CPU tensor without dispatching: wrap it for the block (on
        # a device tensor it dispatches the device-to-host copy, counted as such).
        own = torch.Tensor.__dict__.get("tolist")
        previous = torch.Tensor.tolist
        self._saved_tolist = (own,)

        def tolist(t, *args, **kwargs):
            if t.device.type == "cpu":
                self.events.append(SyncEvent("tolist", "tolist", _caller()))
            return previous(t, *args, **kwargs)

        torch.Tensor.tolist = tolist
        return super().__enter__()

    def __exit__(self, *exc):
        try:
            return super().__exit__(*exc)
        finally:
            (own,) = self._saved_tolist
            if own is None:
                del torch.Tensor.tolist
            else:
                torch.Tensor.tolist = own

    @property
    def count(self) -> int:
        return len(self.events)

    @property
    def counts(self) -> Counter:
        return collections.Counter(e.kind for e in self.events)

    def summary(self) -> str:
        """One line per distinct (kind, op, where), most frequent first."""
        rows = collections.Counter(self.events).most_common()
        lines = [f"{self.count} host sync(s)"]
        lines += [f"{n:6d}  {e.kind:<21} {e.op:<28} {e.where}" for e, n in rows]
        return "\n".join(lines)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        kind = _sync_kind(func, args, kwargs)
        if kind is not None:
            self.events.append(SyncEvent(kind, str(func.overloadpacket.__name__), _caller()))
        return func(*args, **kwargs)
