"""Clean, per-attack and worst-case robust accuracy over a dataset, with early exit."""
from __future__ import annotations

import dataclasses
import time
from typing import Dict, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from ..arguments import check_labels
from ..attacks.base import Attack
from .dataset_batches import Data, shard_batches
from .hygiene import enforce, find_problems



@dataclasses.dataclass
class RobustAccuracy:
    """Accuracies in [0, 1] over `n` samples; `seconds` per attack (and 'clean')."""

    n: int
    clean: float
    per_attack: Dict[str, float]
    worst_case: float
    seconds: Dict[str, float]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def table(self) -> str:
        lines = [f"{'attack':<24}{'accuracy':>10}{'seconds':>10}",
                 f"{'clean':<24}{100 * self.clean:>9.2f}%{self.seconds.get('clean', 0):>10.1f}"]
        for name, acc in self.per_attack.items():
            lines.append(f"{name:<24}{100 * acc:>9.2f}%{self.seconds.get(name, 0):>10.1f}")
        lines.append(f"{'worst case':<24}{100 * self.worst_case:>9.2f}%")
        return "\n".join(lines)


def _named(attacks) -> Dict[str, Attack]:
    if isinstance(attacks, Mapping):
        named = dict(attacks)
    else:
        named = {}
        for a in attacks:
            base = type(a).__name__
            name, i = base, 2
            while name in named:
                name, i = f"{base}_{i}", i + 1
            named[name] = a
    if not named:
        raise ValueError("attacks is empty: give at least one attack")
    for name, a in named.items():
        if not isinstance(a, Attack):
            raise TypeError(f"attack {name!r} is a {type(a).__name__}, not a robustops Attack")
    return named


def evaluation_setup(model, named: Dict[str, "Attack"], distributed: bool, device):
    """(rank, world, device, first attack, uses_eot) of an evaluation over `named` attacks:
    the process's shard (rank 0 of 1 unless distributed), the device (the model's when
    None), the attack whose box the hygiene check uses, and whether every attack is EOT."""
    rank, world = 0, 1
    if distributed:
        from ..distributed import rank_world

        rank, world = rank_world()
    if device is None:
        p = next(iter(model.parameters()), None)
        device = p.device if p is not None else torch.device("cpu")
    first = next(iter(named.values()))
    return rank, world, device, first, all(a.eot_samples > 1 for a in named.values())


def checked_batches(model, data: Data, batch_size: int, max_samples, rank: int, world: int,
                    device, first: "Attack", uses_eot: bool, checks, where: str):
    """(offset, x, y) of this rank's shard on `device` (y int64), after the hygiene checks
    on the first batch and a TypeError for non-float images or non-integer labels. With
    several ranks every rank checks the same first batch of the whole data, so all raise
    or none does (one rank raising alone would leave the others waiting in the all-reduce)."""
    def check(x, y):
        enforce(find_problems(model, x, y, lo=first.lo, hi=first.hi, uses_eot=uses_eot), checks)

    checked = False
    if world > 1:
        head = next(iter(shard_batches(data, batch_size, max_samples, rank=0, world=1)), None)
        if head is not None:
            check(head[1].to(device), head[2].to(device=device, dtype=torch.int64))
        checked = True
    for offset, x, y in shard_batches(data, batch_size, max_samples, rank=rank, world=world):
        if not x.is_floating_point() or y.is_floating_point() or y.is_complex() \
                or y.dtype == torch.bool:
            raise TypeError(f"{where}: images x must be floating and labels y integers, got "
                            f"x {x.dtype} and y {y.dtype}")
        x, y = x.to(device), y.to(device=device, dtype=torch.int64)
        if not checked:  # the first batch, as in every evaluation
            check(x, y)
            checked = True
        yield offset, x, y


def robust_accuracy(model: nn.Module, data: Data,
                    attacks: Union[Sequence[Attack], Mapping[str, Attack]], *,
                    early_exit: bool = True, batch_restarts: bool = False,
                    per_attack: bool = True, checks: str = "raise",
                    batch_size: int = 256, device: Optional[torch.device] = None,
                    progress: bool = True, max_samples: Optional[int] = None,
                    distributed: bool = False) -> RobustAccuracy:
    """Robust accuracy of `model` on `data` under each attack and in the worst case.

    data: a DataLoader / iterable of (x (B, C, H, W) in [lo, hi], y (B,)) or an (x, y)
    tuple of tensors (split into `batch_size` chunks). A sample counts as robust
    for an attack if it is classified correctly clean and at NO iterate of ANY
    restart. early_exit drops broken samples from the working batch (same
    result, fewer passes); batch_restarts runs each attack's restarts in one
    replicated batch (same result, fewer and larger passes). per_attack=False runs each attack only on samples all
    previous attacks left standing (worst case only, AutoAttack style). checks:
    'raise' | 'warn' | 'off' for the hygiene checks on the first batch.
    data may also be a map-style dataset (batched like tensors).

    distributed=True (call it on every rank of a torch.distributed group, e.g. under
    torchrun): each rank evaluates every world-th batch (see shard_batches), the
    random starts are keyed by global sample index, and the counts are summed over
    ranks, so every rank returns the numbers one process would (seconds: the slowest
    rank). Without a process group it is a plain single-process evaluation.

    Host syncs (pinned by tests/sync/test_robust_accuracy_syncs.py): the counts are kept
    on the device and read once at the end. Per batch, each attack makes one sync to
    select the samples it attacks (`nonzero` of those still standing), plus its own
    early-exit checks (Attack.robust_mask: floor(steps / check_every) per round of
    restarts and one at the start of each round but the first; none with
    early_exit=False); a shown progress bar reads two counts per batch (one sync). So
    per batch: at most A * (R + R * floor(steps / check_every)) + 1 for A attacks of R
    rounds, A without early exit (the bar's read only when it is shown: tqdm hides it
    where the output is not a terminal). `seconds` are measured with CUDA events on a GPU (no
    sync; read at the end), with the wall clock elsewhere.
    """
    named = _named(attacks)
    rank, world, device, first, uses_eot = evaluation_setup(model, named, distributed, device)
    n = 0
    # Device counts, read once at the end (no host sync per batch).
    tally = torch.zeros(2 + len(named), dtype=torch.int64, device=device)  # clean, worst, attacks
    watch = _Stopwatch(device)
    bar = None
    if progress and rank == 0:
        from ..progress import progress as progress_report
        bar = progress_report(desc="robust accuracy", unit="img", total=max_samples)
    try:
        for offset, x, y in checked_batches(model, data, batch_size, max_samples, rank, world,
                                            device, first, uses_eot, checks, "robust_accuracy"):
            index = torch.arange(offset, offset + x.shape[0], device=device)
            watch.start()
            with torch.no_grad():
                logits = model(x)
            # Every batch: a -100 label would count as a clean error and never be attacked.
            check_labels(logits, y)
            correct = logits.argmax(1) == y
            watch.stop("clean")
            worst = correct.clone()
            robust_per_attack = []
            for name, atk in named.items():
                if isinstance(atk.eps, Tensor):
                    raise ValueError(f"attack {name!r} has per-sample eps; the evaluator "
                                     "attacks a dataset, give a float eps")
                todo = correct if per_attack else worst
                robust = torch.zeros_like(correct)
                ids = todo.nonzero()[:, 0]  # the attack's one sync of its own per batch
                if ids.numel():
                    watch.start()
                    robust[ids] = atk.robust_mask(x[ids], y[ids], index=index[ids],
                                                  early_exit=early_exit,
                                                  batch_restarts=batch_restarts)
                    watch.stop(name)
                robust_per_attack.append(robust)
                worst &= robust
            tally += torch.stack([correct, worst, *robust_per_attack]).sum(1)
            n += x.shape[0]
            if bar is not None and not bar.disable:
                # The bar's one read per batch; off a terminal only when a line is due.
                if getattr(bar, "due", lambda: True)():
                    clean_now, worst_now = tally[:2].tolist()
                    bar.set_postfix(clean=f"{clean_now / n:.3f}", worst=f"{worst_now / n:.3f}")
                bar.update(x.shape[0])
    finally:
        if bar is not None:
            bar.close()
    totals = tally.tolist()  # the evaluation's final read
    clean_correct, worst_correct = totals[0], totals[1]
    counts = dict(zip(named, totals[2:]))
    seconds = watch.seconds(["clean", *named])
    if world > 1:
        n, clean_correct, worst_correct, counts, seconds = _sum_over_ranks(
            n, clean_correct, worst_correct, counts, seconds, device)
    if n == 0:
        raise ValueError("data yielded no samples")
    return RobustAccuracy(n=n, clean=clean_correct / n,
                          per_attack={k: v / n for k, v in counts.items()},
                          worst_case=worst_correct / n, seconds=seconds)


class _Stopwatch:
    """Seconds per name between start() and stop(name): CUDA events on a GPU (recorded
    on the stream, read in seconds() once all work is done: no sync per interval), the
    wall clock elsewhere."""

    def __init__(self, device):
        self.cuda = torch.device(device).type == "cuda"
        self.totals: Dict[str, float] = {}
        self.events: list = []
        self._start = None

    def start(self) -> None:
        if self.cuda:
            self._start = torch.cuda.Event(enable_timing=True)
            self._start.record()
        else:
            self._start = time.perf_counter()

    def stop(self, name: str) -> None:
        if self.cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            self.events.append((name, self._start, end))
        else:
            self.totals[name] = self.totals.get(name, 0.0) + time.perf_counter() - self._start

    def seconds(self, names) -> Dict[str, float]:
        out = {name: self.totals.get(name, 0.0) for name in names}
        if self.events:
            self.events[-1][2].synchronize()
            for name, a, b in self.events:
                out[name] += a.elapsed_time(b) / 1000.0
        return out


def _sum_over_ranks(n, clean_correct, worst_correct, counts, seconds, device):
    """The counts summed over ranks, the seconds of the slowest rank (every rank gets them)."""
    from ..distributed import all_reduce

    totals = all_reduce(torch.tensor([n, clean_correct, worst_correct, *counts.values()],
                                     dtype=torch.int64, device=device)).tolist()
    slowest = all_reduce(torch.tensor(list(seconds.values()), dtype=torch.float64,
                                      device=device), "max").tolist()
    return (totals[0], totals[1], totals[2], dict(zip(counts, totals[3:])),
            dict(zip(seconds, slowest)))
