"""Trainer: SGD/AdamW, LR schedules, autocast, channels_last, compile, clipping,
JSONL metrics, progress bars, atomic checkpoints with mid-epoch resume, and DDP.

The same script runs alone or under `torchrun --nproc_per_node N` (gloo on CPU,
nccl on GPU): the data are sharded by a DistributedSampler whose shuffle is
keyed by (seed, epoch), so a resumed run sees the same batches in the same order.

Host syncs (pinned by tests/sync/): a training step reads nothing back from the device,
so a GPU's launch queue never drains between logging points. The metrics are summed
on the device, and a non-finite loss is recorded there (the first bad step and its
loss); both are read in one transfer at the next logging point (every `log_every`
steps, each checkpoint, each epoch end), which raises FloatingPointError naming the
step. PyTorch's own syncs remain where a feature needs them: GradScaler (fp16 on CUDA)
reads its inf flag every step, and the progress bar shows the last logged values.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import pathlib
import shutil
import time
import warnings
import weakref
from typing import Callable, Dict, Iterator, Optional, Sequence, Union

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from .callbacks import Callback, callback_key, callback_list
from .checkpoint import (CheckpointError, RunFolderInUse, RunFolderLock, atomic_write_text,
                         checkpoint_folders, load_checkpoint, remove_stale_temporaries,
                         save_checkpoint, save_weights)
from ..arguments import positive_int, require_int, require_real
from ..distributed import all_mean, all_reduce, barrier, init_from_env
from .objectives import Objective

# Checkpoints kept on disk: the newest and its predecessor (in case the newest is damaged).
KEEP_CHECKPOINTS = 2

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("constant", "cosine", "step", "onecycle")
# Metric sums accumulate on the device in float64 (as the Python floats they replace),
# except where the device has no float64.
_SUM_DTYPE = {"mps": torch.float32}
AUTOCAST = {None: None, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
            "fp16": torch.float16, "float16": torch.float16}


class _HeldFolder:
    """A run folder this process has locked, and the Trainer that may use it."""

    def __init__(self, key: str, lock: RunFolderLock, owner: "Trainer"):
        self.key, self.lock, self.owner = key, lock, weakref.ref(owner)


# Run folders locked by this process, by real path. Another process is kept out by the
# flock; another Trainer of this process may take a folder over from one that is not
# training (e.g. a notebook cell run again), never from one inside fit().
_HELD: Dict[str, _HeldFolder] = {}


def _release_orphan(key: str) -> None:
    held = _HELD.get(key)
    if held is not None and held.owner() is None:
        held.lock.release()
        _HELD.pop(key, None)


class _SkipSampler(Sampler):
    """The sampler's epoch order without its first `skip` entries (mid-epoch resume)."""

    def __init__(self, base: Sampler, skip: int):
        self.base, self.skip = base, skip

    def __iter__(self) -> Iterator[int]:
        for i, idx in enumerate(self.base):
            if i >= self.skip:
                yield idx

    def __len__(self) -> int:
        return max(0, len(self.base) - self.skip)


def lr_factor(schedule: str, progress: float, warmup: float) -> float:
    """Multiplier of the base LR at `progress` in [0, 1] of training (warmup: fraction)."""
    if warmup > 0 and progress < warmup:
        return (progress + 1e-12) / warmup
    p = (progress - warmup) / max(1e-12, 1 - warmup)
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(1.0, p)))
    if schedule == "step":  # /10 at 50% and 75%, the classic CIFAR schedule
        return 0.01 if p >= 0.75 else 0.1 if p >= 0.5 else 1.0
    return 1 - min(1.0, p) if p >= 0 else 1.0  # onecycle after warmup: linear decay


class Trainer:
    """Train `model` with `objective` on `train_set` ((x, y) samples, x in [0, 1]).

    train_set: a map-style Dataset of (x, y, ...) or dict samples (image_key / label_key
    name the dict's fields; common names are found without them), (x, y) tensors, or a
    DataLoader (its dataset is used: the Trainer draws its own shuffled, sharded and
    resumable batches of `batch_size`).

    Checkpoints (model, optimizer, position, objective state, RNG) go atomically to
    out_dir/checkpoints/step-N/ (safetensors + JSON) every `checkpoint_every` steps and at each epoch end; a
    new Trainer with the same out_dir resumes from it (resume=True): from the newest
    checkpoint that passes its checks, with a warning for each damaged one skipped, or a
    CheckpointError when none does. Metrics go to out_dir/metrics.jsonl; final weights to
    out_dir/model.safetensors (rank 0 writes).
    The run locks out_dir (out_dir/.lock) from construction to the end of fit() (or
    close()): a second run on the same folder gets RunFolderInUse. A killed run's lock
    goes with its process; its leftover temporaries are removed when the next one starts.
    eval_fn(model) -> dict runs every `eval_every` epochs on rank 0; with
    distributed_eval=True it runs on every rank, which must then shard the work and
    return the same dict everywhere (e.g. robust_accuracy(..., distributed=True)).
    callbacks: Callback instances (robustops.train.callbacks; e.g. TensorBoardWriter) whose
    hooks run on rank 0 at the logging points, evaluations, epoch ends and checkpoints
    (never between logging points: no host sync added); their state_dict() is
    checkpointed and restored on resume.
    """

    def __init__(self, model: nn.Module, objective: Objective, train_set: Dataset, *,
                 batch_size: int = 128, epochs: int = 1, optimizer: str = "sgd", lr: float = 0.1,
                 momentum: float = 0.9, nesterov: bool = True, weight_decay: float = 5e-4,
                 schedule: str = "cosine", warmup_epochs: float = 0.0,
                 grad_clip: Optional[float] = None, autocast: Optional[str] = None,
                 channels_last: bool = False, compile: bool = False,
                 out_dir: Union[None, str, os.PathLike] = None, resume: bool = True,
                 checkpoint_every: int = 200, eval_fn: Optional[Callable[[nn.Module], dict]] = None,
                 eval_every: int = 1, log_every: int = 20, seed: int = 0,
                 device: Union[None, str, torch.device] = None, progress: bool = True,
                 num_workers: int = 0, drop_last: bool = True, distributed_eval: bool = False,
                 image_key: Optional[str] = None, label_key: Optional[str] = None,
                 callbacks: Optional[Sequence[Callback]] = None):
        if not isinstance(objective, Objective):
            raise TypeError(f"objective must be a robustops Objective, got {type(objective).__name__}")
        batch_size, epochs = positive_int(batch_size, "batch_size"), positive_int(epochs, "epochs")
        eval_every = positive_int(eval_every, "eval_every")
        log_every = positive_int(log_every, "log_every")
        # torch's generators take 64 bits and the sampler adds the epoch: 63 bits, as the CLI.
        seed = require_int(seed, "seed", minimum=0, maximum=2**63 - 1,
                           what="an int in [0, 2**63 - 1]")
        self.callbacks = callback_list(callbacks)  # before _resume(), which restores their state
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
        if autocast not in AUTOCAST:
            raise ValueError(f"autocast must be None, 'bf16' or 'fp16', got {autocast!r}")
        lr = require_real(lr, "lr", low=0, low_open=True)
        weight_decay = require_real(weight_decay, "weight_decay", low=0)
        if grad_clip is not None:
            grad_clip = require_real(grad_clip, "grad_clip", low=0, low_open=True,
                                     what="a finite number > 0 (or None: no clipping)")
        # A DataLoader (its dataset: the Trainer batches, shards and resumes itself),
        # (x, y) tensors, or dict samples -> a map-style dataset of (x, y, ...) samples.
        from ..data.batches import sample_dataset
        train_set = sample_dataset(train_set, image_key=image_key, label_key=label_key)
        if len(train_set) == 0:
            raise ValueError("train_set is empty")
        self.device = torch.device(device) if device is not None else (
            next(model.parameters()).device)
        self.rank, self.world = init_from_env(self.device)
        self.out_dir = pathlib.Path(out_dir) if out_dir is not None else None
        self._held: Optional[_HeldFolder] = None
        self._finalizer = None
        self._fitting = False
        # First: a run refused for a busy folder changes nothing. (If the set-up below fails,
        # the lock goes with this half-built Trainer, or to the next Trainer of this process.)
        self._lock()
        torch.manual_seed(seed)  # same initial RNG on every rank
        self.model = model.to(self.device)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.objective = objective
        self.batch_size, self.epochs = batch_size, epochs
        self.lr, self.schedule, self.warmup_epochs = lr, schedule, warmup_epochs
        self.grad_clip = grad_clip
        self.autocast_dtype = AUTOCAST[autocast]
        self.channels_last = channels_last
        self.resume = resume
        self.checkpoint_every = checkpoint_every
        self.eval_fn, self.eval_every, self.log_every = eval_fn, eval_every, log_every
        self.distributed_eval = distributed_eval
        self.seed, self.progress = seed, progress
        self.train_set = train_set
        self.sampler = DistributedSampler(train_set, num_replicas=self.world, rank=self.rank,
                                          shuffle=True, seed=seed, drop_last=drop_last)
        self.num_workers, self.drop_last = num_workers, drop_last
        params = [p for p in self.model.parameters() if p.requires_grad]
        if optimizer == "sgd":
            self.optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum,
                                             nesterov=nesterov and momentum > 0,
                                             weight_decay=weight_decay)
        else:
            self.optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
        self.scaler = torch.amp.GradScaler("cuda") if (
            self.autocast_dtype == torch.float16 and self.device.type == "cuda") else None
        self.net = self.model
        if self.world > 1:
            self.net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if compile:
            self.net = torch.compile(self.net)
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        # Metric sums and count since the last log line (sums on the device, as tensors,
        # between logging points): checkpointed, so a resumed run logs the same averages
        # as an uninterrupted one.
        self._window: tuple = ({}, 0)
        # On the device: the first step whose loss was not finite (-1: none yet) and that
        # loss; read at the next logging point (no host sync per step).
        self._first_bad_step: Optional[Tensor] = None
        self._first_bad_loss: Optional[Tensor] = None
        self._read_at_step = 0  # global_step of the last read: nothing new to read before it
        self.steps_per_epoch  # fail now, not after set-up, when a batch is larger than the data
        self.history: list = []
        if self.out_dir is not None:
            try:
                if self.rank == 0:
                    self._check_out_dir()
                    remove_stale_temporaries(self.out_dir)
                barrier()  # the other ranks read checkpoints once rank 0 has tidied
                if resume:
                    self._resume()
                if self.global_step == 0:
                    self._trim_metrics()  # a fresh start: an old log in the folder is not kept
            except BaseException:
                self.close()
                raise

    # ------------------------------------------------------------------ bookkeeping

    @property
    def steps_per_epoch(self) -> int:
        n = len(self.sampler)
        per = n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)
        if per == 0:
            raise ValueError(f"batch_size {self.batch_size} exceeds the {n} samples per rank "
                             f"({len(self.train_set)} samples over {self.world} processes); "
                             "lower it or pass drop_last=False")
        return per

    def _set_lr(self) -> float:
        total = self.epochs * self.steps_per_epoch
        warm = self.warmup_epochs / self.epochs if self.epochs else 0.0
        lr = self.lr * lr_factor(self.schedule, self.global_step / total, warm)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def _state(self, window: Optional[Dict[str, float]] = None) -> dict:
        """Everything a checkpoint holds; window: the metric sums read as floats (read now
        when not given)."""
        window = self._read_window() if window is None else window
        return {"kind": "robustops.Trainer", "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
                "global_step": self.global_step, "objective": self.objective.state_dict(),
                "window": {"sums": window, "count": self._window[1]},
                "rng": torch.get_rng_state(), "world": self.world,
                "callbacks": {callback_key(i, cb): cb.state_dict()
                              for i, cb in enumerate(self.callbacks)}}

    def _checkpoint_root(self) -> pathlib.Path:
        return self.out_dir / "checkpoints"

    # ------------------------------------------------------------------ the run folder

    def _lock(self) -> None:
        """Lock out_dir for this Trainer (rank 0, which writes); RunFolderInUse if taken."""
        if self.out_dir is None or self.rank != 0:
            return
        key = os.path.realpath(self.out_dir)
        held = _HELD.get(key)
        if held is not None and held.lock.held:
            other = held.owner()
            if other is not None and other is not self and other._fitting:
                raise RunFolderInUse(f"{self.out_dir} is in use by another Trainer of this process, "
                                     "which is training; wait for its fit() to end or choose "
                                     "another out_dir")
        else:
            if self.out_dir.exists() and not self.out_dir.is_dir():
                raise ValueError(f"out_dir {self.out_dir} exists and is not a folder")
            held = _HELD[key] = _HeldFolder(key, RunFolderLock(self.out_dir).acquire(), self)
        held.owner = weakref.ref(self)
        self._held = held
        if self._finalizer is None:  # released if this Trainer is dropped without fit()/close()
            self._finalizer = weakref.finalize(self, _release_orphan, key)

    def close(self) -> None:
        """Release out_dir's lock (fit() does this when it ends; a new fit() takes it again)."""
        held, self._held = self._held, None
        if held is not None and held.owner() is self:
            held.lock.release()
            _HELD.pop(held.key, None)

    def _check_out_dir(self) -> None:
        root = self._checkpoint_root()
        if (root.exists() or root.is_symlink()) and not root.is_dir():
            raise CheckpointError(f"{root} exists and is not a folder; move it away or choose "
                                  "another out_dir")

    def save(self) -> None:
        """Atomic checkpoint of the current position (rank 0 writes; all ranks wait).

        out_dir/checkpoints/step-N/ (safetensors + JSON); the newest KEEP_CHECKPOINTS
        are kept, so a checkpoint damaged after it was written leaves an older one usable.
        """
        if self.out_dir is not None:
            # One read (on every rank: it may all-reduce); a non-finite loss since the last
            # logging point raises here, so no checkpoint holds its weights.
            window = self._read_window()
        if self.out_dir is not None and self.rank == 0:
            root = self._checkpoint_root()
            save_checkpoint(self._state(window), root / f"step-{self.global_step:08d}")
            folders = checkpoint_folders(root)
            # Newer than this one: left by a run that resumed from an older checkpoint
            # (the newer ones were damaged) or started over; this run replaces them.
            stale = [f for step, f in folders if step > self.global_step]
            kept = [f for step, f in folders if step <= self.global_step]
            for old in stale + kept[KEEP_CHECKPOINTS:]:
                if old.is_symlink():
                    old.unlink()
                else:
                    shutil.rmtree(old, ignore_errors=True)
            self._callback("on_checkpoint", self.global_step)
        barrier()

    def _resume(self) -> None:
        """Load the newest usable checkpoint; a damaged one is reported and skipped."""
        problems = []
        for _, folder in checkpoint_folders(self._checkpoint_root()):
            try:
                self._load(folder)
            except CheckpointError as exc:
                problems.append(str(exc))
                warnings.warn(f"{exc}; trying the previous checkpoint (this run will replace "
                              "the damaged one)", stacklevel=3)
                continue
            return
        if problems:
            raise CheckpointError("no usable checkpoint in " f"{self._checkpoint_root()}: "
                                  + "; ".join(problems) + ". Delete the folder to start over.")

    def _load(self, path: pathlib.Path) -> None:
        """Restore the state of checkpoint `path`; CheckpointError if it is damaged, foreign
        or does not fit this run (then nothing of the position is changed and the caller
        loads another checkpoint over the rest)."""
        state = load_checkpoint(path)
        if not isinstance(state, dict) or state.get("kind") != "robustops.Trainer":
            raise CheckpointError(f"{path} is not a robustops Trainer checkpoint; delete it or "
                                  "use another out_dir")
        window = self._check_state(state, path)
        if state["world"] != self.world:
            raise RuntimeError(f"{path} was written by {state['world']} processes, this run has "
                               f"{self.world}; mid-epoch positions would not match")
        spe = self.steps_per_epoch
        epoch, step_in_epoch, global_step = state["epoch"], state["step_in_epoch"], state["global_step"]
        if step_in_epoch > spe or global_step != epoch * spe + step_in_epoch:
            raise CheckpointError(
                f"checkpoint {path} is at step {global_step} (epoch {epoch}, step {step_in_epoch} "
                f"of it), which does not fit this run's {spe} steps per epoch: the batch size, "
                "the data or drop_last differ from the run that wrote it")
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.objective.load_state_dict(state["objective"])
            torch.set_rng_state(state["rng"])
            saved = state.get("callbacks", {})  # none in checkpoints older than callbacks
            for i, cb in enumerate(self.callbacks):
                if callback_key(i, cb) in saved:  # a callback new to this run starts afresh
                    cb.load_state_dict(saved[callback_key(i, cb)])
        except (RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
            raise CheckpointError(f"checkpoint {path} does not fit this run's model, optimizer, "
                                  f"objective or callbacks ({type(exc).__name__}: "
                                  f"{str(exc)[:400]})") from exc
        self.epoch, self.step_in_epoch, self.global_step = epoch, step_in_epoch, global_step
        self._window = window
        self._trim_metrics()

    @staticmethod
    def _check_state(state: dict, path: pathlib.Path) -> tuple:
        """CheckpointError unless `state` has every entry a Trainer writes, of its type;
        returns the metric window."""
        def bad(what: str) -> CheckpointError:
            return CheckpointError(f"checkpoint {path}: {what}")

        def entry(check, value, name: str, **bounds):
            # The scalar checks of robustops.arguments; a damaged checkpoint is a
            # CheckpointError (the resume falls back to the previous one), not a TypeError.
            try:
                return check(value, name, **bounds)
            except (TypeError, ValueError) as err:
                raise bad(f"entry {err}") from None

        for key, kind in (("model", dict), ("optimizer", dict), ("objective", dict), ("rng", Tensor)):
            if not isinstance(state.get(key), kind):
                raise bad(f"entry {key!r} is missing or not a {kind.__name__}")
        if not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state["model"].items()):
            raise bad("entry 'model' is not a state_dict of tensors")
        for key in ("epoch", "step_in_epoch", "global_step", "world"):
            entry(require_int, state.get(key), repr(key), minimum=0)  # None when missing
        window = state.get("window", {"sums": {}, "count": 0})
        sums = window.get("sums") if isinstance(window, dict) else None
        if not (isinstance(sums, dict) and all(isinstance(k, str) for k in sums)):
            raise bad("entry 'window' is not {'sums': {name: number}, 'count': int >= 0}")
        for k, v in sums.items():  # a diverged run's NaN loss resumes as it was saved
            entry(require_real, v, f"'window' sum {k!r}", finite=False)
        count = entry(require_int, window.get("count"), "'window' count", minimum=0)
        saved = state.get("callbacks", {})
        if not (isinstance(saved, dict) and all(isinstance(k, str) and isinstance(v, dict)
                                                for k, v in saved.items())):
            raise bad("entry 'callbacks' is not {name: state dict}")
        return dict(sums), count

    def _trim_metrics(self) -> None:
        # Lines logged after the checkpoint by a killed run are replayed on resume.
        path = self._metrics_path()
        if path is None or not path.exists() or self.rank != 0:
            return

        def before_checkpoint(line: str) -> bool:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by the kill
                return False
            if not isinstance(record, dict) or not all(
                    isinstance(record.get(k, 0), (int, float)) for k in ("step", "epoch")):
                return False
            # An epoch's eval record follows its last step: a checkpoint taken at that step
            # inside the epoch (the epoch not yet counted) precedes it.
            return record.get("step", 0) <= self.global_step and not (
                "eval" in record and record.get("epoch", 0) > self.epoch)

        text = path.read_text(encoding="utf-8", errors="replace")
        keep = [line for line in text.splitlines() if line.strip() and before_checkpoint(line)]
        save_text = "".join(line + "\n" for line in keep)
        if save_text != text:
            atomic_write_text(path, save_text)  # a fresh temporary name: no planted link followed

    def _metrics_path(self) -> Optional[pathlib.Path]:
        return None if self.out_dir is None else self.out_dir / "metrics.jsonl"

    def _log(self, record: dict) -> None:
        self.history.append(record)
        path = self._metrics_path()
        if path is not None and self.rank == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a") as f:
                f.write(json.dumps(record) + "\n")
        self._callback("on_log", record["step"], record)

    def _callback(self, hook: str, *args) -> None:
        """Call `hook` of every callback, on rank 0 (where metrics.jsonl is written)."""
        if self.rank == 0:
            for cb in self.callbacks:
                getattr(cb, hook)(*args)

    # ------------------------------------------------------------------ training

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _batch(self, x: Tensor, y: Tensor):
        x = x.to(self.device, non_blocking=True)
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y.to(self.device, dtype=torch.int64, non_blocking=True)

    def _train_step(self, x: Tensor, y: Tensor) -> Dict[str, Union[Tensor, float]]:
        """One optimizer step per replay; the metrics as device tensors (no host sync)
        and the learning rate as a float."""
        metrics: Dict[str, Tensor] = {}
        for replay in range(self.objective.replays):
            lr = self._set_lr()
            self.net.train()
            self.optimizer.zero_grad(set_to_none=True)
            with self._autocast():
                loss, metrics = self.objective.compute(self.net, x, y, replay=replay)
            self._watch_loss(loss)
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.unscale_(self.optimizer)
            else:
                loss.backward()
            self.objective.after_backward()
            if self.grad_clip is not None:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
        out: Dict[str, Union[Tensor, float]] = {"loss": loss.detach()}
        out.update({k: v.detach() if isinstance(v, Tensor) else float(v) for k, v in metrics.items()})
        out["lr"] = lr
        return out

    def _watch_loss(self, loss: Tensor) -> None:
        """Record on the device the first step with a non-finite loss (no host sync)."""
        if self._first_bad_step is None:
            self._first_bad_step = torch.full((), -1, dtype=torch.int64, device=loss.device)
            self._first_bad_loss = torch.zeros((), dtype=torch.float32, device=loss.device)
        first = (self._first_bad_step < 0) & ~torch.isfinite(loss.detach())
        self._first_bad_step = torch.where(first, self.global_step, self._first_bad_step)
        self._first_bad_loss = torch.where(first, loss.detach().float(), self._first_bad_loss)

    def _accumulate(self, metrics: Dict[str, Union[Tensor, float]]) -> None:
        """Add one step's metrics to the window: tensors on the device, numbers on the host."""
        sums, count = self._window
        for k, v in metrics.items():
            if isinstance(v, Tensor):
                v = v.to(device=self.device, dtype=_SUM_DTYPE.get(self.device.type, torch.float64))
            sums[k] = sums.get(k, 0.0) + v
        self._window = (sums, count + 1)

    def _read_window(self) -> Dict[str, float]:
        """The window's sums as floats (device sums averaged over ranks), read with the
        non-finite-loss record in one transfer; FloatingPointError if a step's loss was
        not finite. The one host sync of a logging point."""
        sums, _ = self._window
        names = [k for k, v in sums.items() if isinstance(v, Tensor)]
        if not names and (self._first_bad_step is None or self._read_at_step == self.global_step):
            return dict(sums)  # nothing on the device that the last read did not see
        self._read_at_step = self.global_step
        dtype = _SUM_DTYPE.get(self.device.type, torch.float64)
        parts = [all_mean(torch.stack([sums[k] for k in names]))] if names else []
        if self._first_bad_step is not None:
            # The earliest bad step over ranks (each rank raises, none waits alone):
            # max of (-step), with -1 (no bad step) mapped below every real step.
            first = self._first_bad_step.to(dtype)
            key = torch.where(first >= 0, -first, torch.full_like(first, -math.inf))
            parts.append(all_reduce(key.reshape(1), "max"))
            parts.append(torch.stack([first, self._first_bad_loss.to(dtype)]))
        values = torch.cat(parts).tolist()
        out = dict(sums)
        out.update(zip(names, values[:len(names)]))
        if self._first_bad_step is not None:
            key, mine, loss = values[len(names):]
            if key > -math.inf:
                step = int(-key)
                value = loss if mine == step else "not finite (on another rank)"
                raise FloatingPointError(
                    f"loss is {value} at step {step} (found at step {self.global_step}, the "
                    "next logging point; the steps between ran on non-finite values): lower "
                    "the LR, enable grad_clip, or check the data (the last checkpoint, taken "
                    "before it, is intact)")
        return out

    def _window_means(self) -> Dict[str, float]:
        """Mean of each metric over the window (one host read; raises on a bad loss)."""
        count = self._window[1]
        return {k: v / count for k, v in self._read_window().items()}

    def fit(self) -> dict:
        """Train to the last epoch (resuming where a checkpoint left off); returns the last metrics."""
        self._lock()
        self._fitting = True
        try:
            self._callback("on_fit_start", self)
            return self._fit()
        finally:
            self._fitting = False
            try:
                self._callback("close")
            finally:
                self.close()

    def _fit(self) -> dict:
        bar = None
        last: dict = {}
        t_start = time.perf_counter()
        while self.epoch < self.epochs:
            self.sampler.set_epoch(self.epoch)
            loader = DataLoader(self.train_set, batch_size=self.batch_size,
                                sampler=_SkipSampler(self.sampler, self.step_in_epoch * self.batch_size),
                                num_workers=self.num_workers, drop_last=self.drop_last)
            if self.progress and self.rank == 0:
                from ..progress import progress
                bar = progress(total=self.steps_per_epoch, initial=self.step_in_epoch,
                               desc=f"train epoch {self.epoch + 1}/{self.epochs}", unit="step")
            for x, y in loader:
                if self.step_in_epoch >= self.steps_per_epoch:
                    break
                m = self._train_step(*self._batch(x, y))
                self._accumulate(m)
                self.step_in_epoch += 1
                self.global_step += 1
                if bar is not None:
                    bar.update(1)
                if self.global_step % self.log_every == 0:
                    # A logging point: the one host read since the last one.
                    last = self._window_means()
                    self._log({"step": self.global_step, "epoch": self.epoch, **last,
                               "seconds": time.perf_counter() - t_start})
                    self._window = ({}, 0)
                    if bar is not None:
                        bar.set_postfix({k: f"{v:.3f}" for k, v in last.items() if k != "lr"})
                if self.checkpoint_every and self.global_step % self.checkpoint_every == 0:
                    self.save()
            if bar is not None:
                bar.close()
            if self._window[1]:
                last = self._window_means()
            else:
                self._read_window()  # an epoch end is a logging point: report a bad loss
            self._window = ({}, 0)
            self.epoch += 1
            self.step_in_epoch = 0
            if self.eval_fn is not None and (self.epoch % self.eval_every == 0
                                             or self.epoch == self.epochs):
                if self.rank == 0 or self.distributed_eval:
                    self.model.eval()
                    result = self.eval_fn(self.model)
                    self._log({"step": self.global_step, "epoch": self.epoch, "eval": result})
                    last = {**last, **{f"eval_{k}": v for k, v in result.items()}}
                barrier()
            self._callback("on_epoch_end", self.epoch, last)
            self.save()
        if self.out_dir is not None and self.rank == 0:
            save_weights(self.model.state_dict(), self.out_dir / "model.safetensors")
        barrier()
        self.model.eval()
        self._callback("on_fit_end", last)
        return last
