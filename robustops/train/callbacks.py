"""Callback: hooks the Trainer calls at its logging points (TensorBoard, your own logger).

The Trainer calls each hook on rank 0 only (the rank that writes metrics.jsonl) and only
where it already holds host values: a logging point (every `log_every` steps), an
evaluation, an epoch end, a checkpoint and the end of fit(). A hook therefore adds no
host sync between logging points (tests/sync/ pin the Trainer's syncs); it receives
Python numbers, never device tensors.

Resume: `state_dict()` goes into every checkpoint and `load_state_dict()` gets it back
when a run resumes from that checkpoint, so a killed run's callback state is the state
at its last checkpoint, as the model's is. The steps that a resumed run logs are the
steps the killed run logged after its checkpoint (metrics.jsonl is trimmed to the
checkpoint): `on_fit_start` tells a callback where the run stands (trainer.global_step)
so it can drop what it wrote after that step.
"""
from __future__ import annotations

from typing import Any, Dict, Optional


class Callback:
    """Base class of the Trainer's callbacks: override the hooks you need (each does
    nothing here). Pass instances as Trainer(..., callbacks=[...])."""

    def on_fit_start(self, trainer) -> None:
        """fit() begins (or resumes: trainer.global_step > 0, the checkpoint's step)."""

    def on_log(self, step: int, record: Dict[str, Any]) -> None:
        """A record was appended to metrics.jsonl: the window means at a logging point
        ({"step", "epoch", <metric>: float, ..., "lr", "seconds"}) or an evaluation
        ({"step", "epoch", "eval": {name: value}}); step is the global optimizer step."""

    def on_epoch_end(self, epoch: int, metrics: Dict[str, float]) -> None:
        """An epoch ended (epoch: the number of epochs done); metrics: the last window's
        means and the evaluation's results (as fit() returns them)."""

    def on_checkpoint(self, step: int) -> None:
        """A checkpoint of global step `step` was written: a resume starts here, so
        anything buffered up to it should reach the disk now."""

    def on_fit_end(self, metrics: Dict[str, float]) -> None:
        """fit() finished training (the final weights are written)."""

    def close(self) -> None:
        """fit() ends, finished or not (an exception, an interrupt): release files."""

    def state_dict(self) -> Dict[str, Any]:
        """What a resumed run needs (tensors, numbers, strings, lists, dicts)."""
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore state_dict() from a checkpoint."""


def callback_list(callbacks: Optional[Any]) -> list:
    """The Trainer's `callbacks` argument as a list of Callback; TypeError otherwise."""
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback):
        callbacks = [callbacks]
    if isinstance(callbacks, (str, bytes, dict)) or not hasattr(callbacks, "__iter__"):
        raise TypeError("callbacks must be a list of robustops.train.Callback, got "
                        f"{type(callbacks).__name__}")
    callbacks = list(callbacks)
    for i, cb in enumerate(callbacks):
        if not isinstance(cb, Callback):
            raise TypeError(f"callbacks[{i}] is a {type(cb).__name__}, not a "
                            "robustops.train.Callback: subclass Callback and override the "
                            "hooks you need (on_log, on_epoch_end, ...)")
    return callbacks


def callback_key(index: int, callback: Callback) -> str:
    """The name of a callback's state in a checkpoint: position and class, so a resumed
    run with other callbacks gives each only its own state."""
    return f"{index}:{type(callback).__qualname__}"
