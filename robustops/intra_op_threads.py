"""Thread counts for work made of many small tensor ops (a grain size at the call level).

Every ATen op above ~32k elements is a fork-join parallel region over all intra-op
threads. Code that chains hundreds of such ops on a few MB each (the corruption
suite on CIFAR-sized batches) gains little from the threads on an idle machine
(measured, 2 cores: 2.02 s with 2 threads vs 2.17 s with 1 for the 15 x 5 suite on
256 x 3 x 32 x 32) but collapses when other processes share the cores: each join
waits for a descheduled thread for up to a scheduler time slice (same suite with
two busy background processes: 7.3 s with 2 threads vs 3.2 s with 1). So such code
asks for threads in proportion to the work of one op, as at::parallel_for does per
loop with its grain size, and the bound below is that grain at the level of a call.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch

# Elements of one op below which a second thread is not worth its join (measured on
# the corruption suite, 2 cores: 0.79 M elements per op gain 7% from 2 threads idle,
# 2.4 M gain 74%).
SMALL_OP_GRAIN = 1 << 20


def threads_for(numel: int, grain: int = SMALL_OP_GRAIN) -> int:
    """Intra-op threads for ops of `numel` elements: one per `grain` elements, at least
    one, at most torch.get_num_threads()."""
    return max(1, min(torch.get_num_threads(), int(numel) // grain))


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


__all__ = ["SMALL_OP_GRAIN", "threads_for", "intra_op_threads"]
