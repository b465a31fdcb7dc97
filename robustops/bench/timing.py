"""Side-by-side timing: interleaved repetitions, medians, dispatched-op counts.

Every case of a comparison is timed in the same process, round-robin, so the
allocator regime, CPU frequency and cache state are shared; medians resist the
occasional preemption on a 2-core machine.
"""
from __future__ import annotations

import contextlib
import random
import statistics
import time
from collections import Counter
from typing import Callable, Dict, Iterator, List

import torch
from torch.utils._python_dispatch import TorchDispatchMode


def interleaved_medians(cases: Dict[str, Callable[[], object]], repeats: int = 200,
                        inner: int = 5, warmup: int = 20) -> Dict[str, float]:
    """Median seconds per call of each case, timing them round-robin.

    The order is shuffled every repetition (seeded) so that no case always
    follows the one that evicts the caches.
    """
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    samples: Dict[str, List[float]] = {k: [] for k in cases}
    order = list(cases.items())
    rng = random.Random(0)
    for _ in range(repeats):
        rng.shuffle(order)
        for name, fn in order:
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            samples[name].append((time.perf_counter() - t0) / inner)
    return {k: statistics.median(v) for k, v in samples.items()}


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


@contextlib.contextmanager
def threads(n: int) -> Iterator[int]:
    """torch's intra-op thread count set to n inside the block, restored after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)


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
