"""The objective interface the Trainer calls: one loss per (mini)batch."""
from __future__ import annotations

from typing import Dict, Tuple

from torch import Tensor, nn


class Objective:
    """A training loss. Subclasses implement `compute`.

    replays: optimizer steps the Trainer takes on each minibatch (free AT > 1).
    `after_backward` runs after loss.backward() (free AT reads input gradients
    there). `state_dict`/`load_state_dict` carry state across checkpoints.
    """

    name = "objective"
    replays = 1

    def compute(self, model: nn.Module, x: Tensor, y: Tensor, *, replay: int = 0
                ) -> Tuple[Tensor, Dict[str, Tensor]]:
        """(scalar loss, metrics) for the batch x (B, C, H, W) in [0, 1], y (B,)."""
        raise NotImplementedError

    def after_backward(self) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def config(self) -> dict:
        """Hyper-parameters, for logs and checkpoints."""
        return {k: v for k, v in vars(self).items() if isinstance(v, (int, float, str, bool))}


def accuracy(logits: Tensor, y: Tensor) -> Tensor:
    return (logits.argmax(1) == y).float().mean()
