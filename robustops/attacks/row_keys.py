"""The global sample index and restart number of every row of an attack's state.

Attack.perturb and Attack.robust_mask call `_x0(x_nat, eps, index, restart)` once per
restart, just before `_start`, and `_start` sees only the rows. The attacks of the
AutoAttack suite need both keys per row in `_start`: APGD-T and FAB-T pick their target
class from the restart number (restart r attacks the (r + 2)-th most likely class),
Square keys its random squares by sample and restart. RowKeys records the keys `_x0` was
called with and hands them to `_start`, so these attacks reuse Attack's early exit and
batched restarts unchanged.
"""
from __future__ import annotations

from typing import List, Tuple

import torch
from torch import Tensor

# Restarts folded into one counter-RNG key per row: key = index * MAX_RESTARTS + restart.
MAX_RESTARTS = 1024


class RowKeys:
    """Mixin for an Attack: `_initial_point` replaces `_x0`; `_row_keys` in `_start`."""

    def _initial_point(self, x_nat: Tensor, eps, index: Tensor, restart: int) -> Tensor:
        return super()._x0(x_nat, eps, index, restart)

    def _x0(self, x_nat: Tensor, eps, index: Tensor, restart: int) -> Tensor:
        pending: List[Tuple[Tensor, int]] = self.__dict__.setdefault("_pending_keys", [])
        pending.append((index, restart))
        return self._initial_point(x_nat, eps, index, restart)

    def _row_keys(self, rows: int, device: torch.device) -> Tuple[Tensor, Tensor]:
        """(index (B,), restart (B,)) int64 of the rows `_start` builds; an explicit start
        (perturb(start=...)) has no recorded keys: rows 0..B-1, restart 0."""
        pending = self.__dict__.pop("_pending_keys", [])
        if not pending:
            index = torch.arange(rows, device=device)
            return index, torch.zeros_like(index)
        index = torch.cat([i.to(device) for i, _ in pending])
        restart = torch.cat([torch.full_like(i.to(device), r) for i, r in pending])
        if index.shape[0] != rows:
            raise RuntimeError(f"internal: {index.shape[0]} row keys for {rows} rows")
        return index, restart

    @staticmethod
    def rng_key(index: Tensor, restart: Tensor) -> Tensor:
        """One counter-RNG key per (sample, restart)."""
        return index * MAX_RESTARTS + restart
