"""torch.distributed helpers shared by the Trainer, the evaluators and the CLI: each works
unchanged alone (rank 0 of 1) or under torchrun."""
from __future__ import annotations

import os
from typing import Tuple

import torch
import torch.distributed as dist


def init_from_env(device: torch.device) -> Tuple[int, int]:
    """(rank, world_size); starts the process group when torchrun's variables say so.

    gloo for CPU, nccl for CUDA. A single process (no WORLD_SIZE) runs as rank 0 of 1.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of a tensor over ranks (itself when alone)."""
    if dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value)
        value /= dist.get_world_size()
    return value


def rank_world() -> Tuple[int, int]:
    """(rank, world_size) of the running process group; (0, 1) when there is none."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_reduce(value: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """A copy of `value` reduced over ranks with op 'sum' | 'max' (itself when alone).

    The tensor must be on the device the backend talks to (CPU for gloo, CUDA for nccl).
    """
    value = value.clone()
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(value, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return value


def shutdown() -> None:
    """Leave the process group (if any) so torchrun's workers exit cleanly."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
