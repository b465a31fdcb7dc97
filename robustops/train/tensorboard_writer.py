"""TensorBoardWriter: the Trainer's logged metrics as TensorBoard scalars (a Callback).

Each metrics.jsonl record becomes scalars at its global step: `train/<metric>` for a
logging point's window means (loss, accuracy, lr, epoch, seconds, ...), `eval/<name>`
for an evaluation. Needs the `tensorboard` package (`pip install tensorboard`); view
with `tensorboard --logdir DIR`.

Resume keeps one numbering: the steps are the Trainer's global steps, which a resumed
run takes from its checkpoint. The events a killed run wrote after that checkpoint
are purged (SummaryWriter's purge_step: TensorBoard hides a log directory's earlier
events from the purge step on), and the resumed run logs those steps again. Since
the purge starts at the checkpoint's own step (an epoch's evaluation may follow its
last checkpoint at the same step), the scalars written at that step are part of the
writer's checkpointed state and are written again on resume. Events are flushed at
each checkpoint, so a kill loses none that a resume will not rewrite.
"""
from __future__ import annotations

import os
import pathlib
import time
from typing import Any, Dict, Optional, Union

from ..arguments import require_int, require_real
from .callbacks import Callback


def _summary_writer_class():
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:  # torch's module imports the tensorboard package
        raise ImportError("TensorBoardWriter needs the tensorboard package: pip install "
                          f"tensorboard (importing it failed: {exc})") from exc
    return SummaryWriter


def _newest_event_second(log_dir: pathlib.Path) -> Optional[int]:
    """The creation second in the name of log_dir's newest event file (None: no file).
    Names are events.out.tfevents.<10-digit second>.<host>.<pid>.<n>."""
    seconds = []
    if log_dir.is_dir():
        for path in log_dir.glob("events.out.tfevents.*"):
            field = path.name.split(".")[3]
            if field.isdigit():
                seconds.append(int(field))
    return max(seconds, default=None)


def _scalars(record: Dict[str, Any]) -> Dict[str, float]:
    """{tag: value} of a metrics.jsonl record: numbers only (no bools), step left out."""
    if isinstance(record.get("eval"), dict):
        prefix, values = "eval/", record["eval"]
    else:
        prefix, values = "train/", {k: v for k, v in record.items() if k != "step"}
    return {prefix + str(k): float(v) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


class TensorBoardWriter(Callback):
    """Write the Trainer's logged metrics to TensorBoard event files in `log_dir`.

    log_dir: the folder of the event files (created); one run per folder, as TensorBoard
    expects (`tensorboard --logdir` of its parent compares runs). ImportError (saying
    `pip install tensorboard`) at construction when the tensorboard package is missing.
    """

    def __init__(self, log_dir: Union[str, os.PathLike]):
        if not isinstance(log_dir, (str, os.PathLike)):
            raise TypeError(f"log_dir must be a path, got {type(log_dir).__name__}")
        if not str(log_dir).strip():
            raise ValueError("log_dir is empty; name the folder for the TensorBoard events")
        self.log_dir = pathlib.Path(log_dir)
        if self.log_dir.exists() and not self.log_dir.is_dir():
            raise ValueError(f"log_dir {self.log_dir} exists and is not a folder; choose "
                             "another TensorBoard folder")
        self._summary_writer = _summary_writer_class()
        self._writer = None
        # The scalars written at the newest step: rewritten after a resume's purge.
        self._last_step: Optional[int] = None
        self._last_scalars: Dict[str, float] = {}

    def _open(self, purge_step: Optional[int]):
        self.close()
        # TensorBoard reads a folder's event files in name order, and a name starts with
        # its creation second: a writer opened in the same second as the newest file
        # (a quick resume) could sort before it, so its purge would come first. Wait
        # for the next second (at most one).
        newest = _newest_event_second(self.log_dir)
        while newest is not None and int(time.time()) <= newest:
            time.sleep(newest + 1 - time.time() + 1e-3)
        self._writer = self._summary_writer(log_dir=str(self.log_dir), purge_step=purge_step)
        return self._writer

    def on_fit_start(self, trainer) -> None:
        step = trainer.global_step
        # From the checkpoint's step on, what an earlier (killed) run wrote is hidden.
        writer = self._open(purge_step=step)
        if self._last_step == step:
            for tag, value in self._last_scalars.items():
                writer.add_scalar(tag, value, global_step=step)
        else:
            self._last_step, self._last_scalars = None, {}

    def on_log(self, step: int, record: Dict[str, Any]) -> None:
        writer = self._writer if self._writer is not None else self._open(purge_step=None)
        scalars = _scalars(record)
        for tag, value in scalars.items():
            writer.add_scalar(tag, value, global_step=step)
        if step != self._last_step:
            self._last_step, self._last_scalars = step, {}
        self._last_scalars.update(scalars)

    def on_checkpoint(self, step: int) -> None:
        if self._writer is not None:
            self._writer.flush()  # a resume from this checkpoint finds every event before it

    def on_fit_end(self, metrics: Dict[str, float]) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

    def state_dict(self) -> Dict[str, Any]:
        return {"last_step": -1 if self._last_step is None else self._last_step,
                "last_scalars": dict(self._last_scalars)}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        where = "TensorBoardWriter state"
        step = require_int(state.get("last_step", -1), "last_step", where=where, minimum=-1)
        scalars = state.get("last_scalars", {})
        if not (isinstance(scalars, dict) and all(isinstance(k, str) for k in scalars)):
            raise TypeError(f"{where}: last_scalars must be a dict {{tag: number}}, got "
                            f"{scalars!r:.200}")
        # NaN and inf as logged (a diverged loss).
        self._last_scalars = {k: require_real(v, f"last_scalars[{k!r}]", where=where, finite=False)
                              for k, v in scalars.items()}
        self._last_step = None if step < 0 else step
