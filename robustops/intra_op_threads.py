"""Thread counts for work made of many small tensor ops: a grain size at the level of a
call, and no more threads than the cores other processes leave free.

Every ATen op above ~32k elements is a fork-join parallel region over all intra-op
threads. Code that chains hundreds of such ops on a few MB each (the corruption suite,
AutoAttack's inner loops) runs well on idle cores, but when other processes share them
each join waits for a descheduled thread for up to a scheduler time slice: the 19
corruptions x 5 severities on 256 x 3 x 32 x 32, 2 cores, with two busy background
processes took 7.3 s with 2 threads and 3.2 s with 1 (idle: 1.0 s with 2, 1.6 s with 1).
So such code asks for threads (a) in proportion to the work of one op, as
at::parallel_for does per loop with its grain size, and (b) at most one per core that
is free right now: the runnable threads of other processes are read from /proc at the
call (Linux, when the process may use every core; elsewhere (b) is skipped).
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator, Optional

import torch

# Elements per thread of a call's typical op (AutoAttack's grain is a multiple of it).
SMALL_OP_GRAIN = 1 << 20
# The corruptions': a CIFAR batch of 256 (0.79 M elements per op) gets 2 threads, which
# made the 15 x 5 suite 1.6x faster on 2 idle cores; 64 images (0.2 M) get 1.
CORRUPTION_GRAIN = 1 << 18


def free_cores(samples: int = 3, enough: Optional[int] = None) -> Optional[int]:
    """Cores not wanted right now by other processes' runnable threads (>= 0), or None
    where it cannot be told: not Linux, or a process pinned to some cores (a cpuset:
    /proc/loadavg counts the whole machine, not our cores).

    /proc/loadavg's running count is taken at this instant and includes this process's
    own runnable threads (an OpenMP worker still spinning after the last op, say), which
    /proc/self/task/*/stat tell apart; a thread that stops between the two reads looks
    like another process's, so the best of `samples` readings (~60 us each) is taken,
    stopping at the first that shows `enough` free cores (the idle case reads once).
    """
    best = None
    for _ in range(samples):
        free = _free_cores_once()
        if free is None:
            return None
        best = free if best is None else max(best, free)
        if enough is not None and best >= enough:
            break
    return best


def _free_cores_once() -> Optional[int]:
    try:
        cores = len(os.sched_getaffinity(0))
        if cores != os.cpu_count():
            return None
        with open("/proc/loadavg") as f:
            running = int(f.read().split()[3].split("/")[0])
        own = 0
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/stat") as f:
                    stat = f.read()
            except OSError:  # the thread ended meanwhile
                continue
            own += stat[stat.rindex(")") + 2] == "R"
    except (AttributeError, OSError, ValueError, IndexError):
        return None
    return max(0, cores - max(0, running - max(own, 1)))


def threads_for(numel: int, grain: int = SMALL_OP_GRAIN) -> int:
    """Intra-op threads for ops of `numel` elements: one per `grain` elements, at most
    torch.get_num_threads() and the free cores (free_cores), at least one."""
    n = min(torch.get_num_threads(), int(numel) // grain)
    if n > 1:
        free = free_cores(enough=n)
        if free is not None:
            n = min(n, free)
    return max(1, n)


@contextlib.contextmanager
def intra_op_threads(n: int) -> Iterator[int]:
    """torch's intra-op thread count set to n inside the block and restored after it.

    The count is process-wide: torch ops run by other Python threads meanwhile use it
    too. Nothing changes when n already is the count.
    """
    before = torch.get_num_threads()
    if n == before:
        yield n
        return
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)


__all__ = ["SMALL_OP_GRAIN", "CORRUPTION_GRAIN", "free_cores", "threads_for", "intra_op_threads"]
