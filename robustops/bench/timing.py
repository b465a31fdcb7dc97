"""Side-by-side timing: interleaved repetitions, medians and spread, dispatched-op counts,
and the run's metadata (device, versions, threads, load average, commit).

Every case of a comparison is timed in the same process, round-robin, so the
allocator regime, CPU frequency and cache state are shared; medians resist the
occasional preemption on a 2-core machine, and the interquartile range (IQR) says
how much the samples spread. On a CUDA device every sample is bracketed by CUDA
events after a synchronisation, so it times the kernels, not their launches.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Union

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ..intra_op_threads import intra_op_threads

DeviceLike = Union[str, torch.device, None]


@dataclass(frozen=True)
class Timing:
    """Seconds per call of one case: the median of its samples and their quartiles."""

    median: float
    q1: float
    q3: float
    samples: int

    @property
    def iqr(self) -> float:
        """Interquartile range (q3 - q1), seconds: the spread of the middle half."""
        return self.q3 - self.q1

    def as_dict(self, prefix: str = "", scale: float = 1.0, unit: str = "s") -> dict:
        """{prefix}{unit} (median) and {prefix}iqr_{unit}, scaled (1e6 with unit 'us')."""
        return {f"{prefix}{unit}": self.median * scale, f"{prefix}iqr_{unit}": self.iqr * scale}


def summarize(samples: Sequence[float]) -> Timing:
    """Median and quartiles (inclusive method) of per-call seconds; one sample gives IQR 0."""
    if not samples:
        raise ValueError("summarize() needs at least one timing sample")
    xs = sorted(float(v) for v in samples)
    if len(xs) == 1:
        return Timing(xs[0], xs[0], xs[0], 1)
    q1, med, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    return Timing(med, q1, q3, len(xs))


def bench_device(device: DeviceLike = None) -> torch.device:
    """The device a benchmark runs on: None or 'cpu' -> cpu; 'cuda' / 'cuda:i' -> that GPU.

    Raises ValueError (one line, saying what to use instead) for a name that is not a
    device, a GPU that torch cannot see, or another device type.
    """
    if isinstance(device, torch.device):
        dev = device
    elif device is None:
        dev = torch.device("cpu")
    elif isinstance(device, str):
        try:
            dev = torch.device(device)
        except RuntimeError:
            raise ValueError(f"device {device!r} is not a device name: use cpu, cuda or cuda:<i>"
                             ) from None
    else:
        raise TypeError(f"device must be a str or torch.device, got {type(device).__name__}")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {str(dev)!r}: the bench runs on cpu or cuda")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = (f"CUDA {torch.version.cuda} build" if torch.version.cuda
                     else "a CPU-only build")
            raise ValueError(f"device {str(dev)!r} asked for but torch {torch.__version__} "
                             f"({build}) sees no CUDA GPU; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {str(dev)!r}: torch sees {torch.cuda.device_count()} "
                             f"GPU(s), indices 0..{torch.cuda.device_count() - 1}")
    return dev


def synchronize(device: DeviceLike = None) -> None:
    """Wait for the device's queued work (no-op on CPU): call before reading a clock."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _sample(fn: Callable[[], object], inner: int, device: torch.device) -> float:
    """Seconds per call of `inner` back-to-back calls of fn (synchronised on CUDA)."""
    if device.type == "cuda":
        # Queued work from the previous case must not land in this sample; events time
        # the GPU's work itself, the final synchronize waits for it.
        torch.cuda.synchronize(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(inner):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / inner
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t0) / inner


def interleaved_timings(cases: Dict[str, Callable[[], object]], repeats: int = 200,
                        inner: int = 5, warmup: int = 20,
                        device: DeviceLike = None) -> Dict[str, Timing]:
    """Median and quartiles of seconds per call of each case, timing them round-robin.

    The order is shuffled every repetition (seeded) so that no case always
    follows the one that evicts the caches. device: where the cases run (CUDA:
    synchronised, CUDA-event timing; CPU: perf_counter).
    """
    dev = torch.device(device) if device is not None else torch.device("cpu")
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    synchronize(dev)
    samples: Dict[str, List[float]] = {k: [] for k in cases}
    order = list(cases.items())
    rng = random.Random(0)
    for _ in range(repeats):
        rng.shuffle(order)
        for name, fn in order:
            samples[name].append(_sample(fn, inner, dev))
    return {k: summarize(v) for k, v in samples.items()}


def interleaved_medians(cases: Dict[str, Callable[[], object]], repeats: int = 200,
                        inner: int = 5, warmup: int = 20,
                        device: DeviceLike = None) -> Dict[str, float]:
    """Median seconds per call of each case (interleaved_timings without the spread)."""
    return {k: t.median for k, t in
            interleaved_timings(cases, repeats, inner, warmup, device).items()}


class DispatchCounter(TorchDispatchMode):
    """Counts the ops that reach the dispatcher (ATen and custom ops alike)."""

    def __init__(self):
        super().__init__()
        self.ops: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func.overloadpacket.__name__) if hasattr(func, "overloadpacket") else str(func)] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.ops.values())


def count_dispatched(fn: Callable[[], object]) -> DispatchCounter:
    """Run fn once under a DispatchCounter and return the counter."""
    with DispatchCounter() as counter:
        fn()
    return counter


def format_table(headers: List[str], rows: List[List[str]]) -> str:
    """A plain-text table with right-aligned columns (first column left-aligned)."""
    widths = [max(len(str(r[i])) for r in [headers] + rows) for i in range(len(headers))]
    def line(r):
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(r, widths)))
    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), sep] + [line(r) for r in rows])


def set_threads(n: int | None) -> int:
    if n:
        torch.set_num_threads(n)
    return torch.get_num_threads()


# torch's intra-op thread count set to n inside a block, restored after it.
threads = intra_op_threads


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed buffers instead of returning them to the OS.

    Otherwise eager PyTorch code that frees and re-allocates large temporaries
    can pay page faults on every call (measured here: the same eager PGD step
    0.4 ms warm, 5.4 ms re-faulting). The bench gives the eager side its best
    case, so ratios are conservative. Returns False where mallopt is unavailable.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = libc.mallopt(m_mmap_threshold, 1 << 30) and libc.mallopt(m_trim_threshold, 1 << 30)
        return bool(ok)
    except (OSError, AttributeError):
        return False


# ----------------------------------------------------------------------------- run metadata


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask; os.cpu_count() elsewhere)."""
    with contextlib.suppress(AttributeError, OSError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def load_average() -> Optional[float]:
    """The 1-minute load average, or None where the OS has none (Windows)."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return None


def load_warning(load: Optional[float], cores: Optional[int] = None) -> Optional[str]:
    """A warning line when the load average exceeds the cores (other work shares the CPUs,
    so CPU timings are inflated and noisy), else None."""
    cores = usable_cores() if cores is None else cores
    if load is None or load <= cores:
        return None
    return (f"WARNING: load average {load:.1f} exceeds the {cores} cores: other processes "
            "share the CPUs, so the times are inflated and spread (see the IQR); ratios "
            "timed side by side hold up better than absolute times")


def git_commit(path: Optional[str] = None) -> Optional[str]:
    """The commit of the git checkout holding `path` (default: this package), with '+dirty'
    when tracked files are modified; None outside a checkout or without git."""
    here = path or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        head = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", here, "status", "--porcelain", "-uno"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")


def _package_version(name: str) -> Optional[str]:
    """An installed distribution's version, without importing it (None when absent)."""
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def device_name(device: DeviceLike = None) -> str:
    """The GPU's name for a CUDA device; the CPU model (or platform.processor()) for cpu."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "cpu"


def run_metadata(device: DeviceLike = None) -> dict:
    """What a timing depends on: device, versions, threads, cores, load average, commit."""
    from .. import backend

    dev = torch.device(device) if device is not None else torch.device("cpu")
    cores = usable_cores()
    meta = {
        "device": str(dev), "device_name": device_name(dev),
        "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "triton": _package_version("triton"),
        "python": platform.python_version(), "platform": platform.platform(),
        "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
        "cores": cores, "load_average": load_average(),
        "backends": list(backend.available()),
        "git_commit": git_commit(),
        "time_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "argv": list(sys.argv),
    }
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        meta["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        meta["gpu_capability"] = f"{props.major}.{props.minor}"
    return meta
