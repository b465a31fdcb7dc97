"""AutoAttack (Croce & Hein, 2020) on robustops' attacks: the suite, its versions, and the
gradient-masking check of its authors.

Versions (the reference's, fra31/auto-attack):
- standard: APGD-CE, APGD-T (9 target classes), FAB-T (9 target classes), Square (5000
  queries); 100 iterations, 1 restart (per target);
- plus: APGD-CE and APGD-DLR (5 restarts), FAB (5 restarts), Square, APGD-T, FAB-T;
- rand: APGD-CE and APGD-DLR with EOT over 20 forward passes, for randomised models.

Each attack runs only on the samples every earlier attack left standing, with early
exit inside the attack (a sample leaves as soon as an iterate fools the model); the 9
target classes of APGD-T and FAB-T run in one replicated batch (with batch_restarts, the
restarts of the other attacks too). Both give the robust mask of the sequential run.
Square evaluates several queries per pass where a pass costs its call more than its rows
(see Square's queries_per_pass: the same search). On the CPU the suite runs with the
intra-op threads its largest op is worth (robustops.intra_op_threads): thousands of
passes of small ops, each a fork-join that stalls on a loaded machine.
"""
from __future__ import annotations

import contextlib
import dataclasses
import time
import warnings
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from ..arguments import positive_int
from ..counter_rng import sample_index
from ..intra_op_threads import SMALL_OP_GRAIN, intra_op_threads, threads_for
from .apgd import APGD
from .apgd_targeted import APGDTargeted
from .base import Attack, Eps
from .fab import FAB
from .model_state import attack_state
from .square import Square

VERSIONS = ("standard", "plus", "rand")
# The reference's check: Square lowering the robust accuracy of the white-box attacks by
# more than this fraction flags the evaluation as unreliable (gradient masking).
BLACK_BOX_GAP = 0.002
# Elements of an attack's largest op per intra-op thread on the CPU (threads_for's grain,
# read again before each attack, so the free cores are those of the moment). A second
# thread only where the cores are free: FAB-T on 126 MNIST images (9 x 126 rows of 784)
# took 6.1-7.3 s on 1 thread and 43-44 s on 2 at load 1.5-3.3 (its ~20 ops per step
# are fork-joins that each wait for a descheduled thread), while on an idle machine two
# threads for APGD-T, FAB-T and Square run the 500-image suite in 2.7-3.1 s against
# 4.2-4.5 s on one (load 1.1-1.3).
SUITE_OP_GRAIN = SMALL_OP_GRAIN // 4
# Square's queries per pass at most: on an MNIST MLP (35 samples, 5000 queries, 2 cores
# under load) 8 per pass took 2.0 s, 16 2.1 s, 4 2.7 s, 1 8.2 s (the later queries of
# a pass are wasted once one improves).
SQUARE_MOST_QUERIES_PER_PASS = 8
# The reference's schedule: APGD/FAB iterations and Square's queries. (torchattacks'
# AutoAttack ships steps=10 for APGD, APGD-T and FAB; `steps=10` runs that schedule.)
STEPS, N_QUERIES = 100, 5000


def suite(model: nn.Module, *, eps: Eps, norm: str = "linf", version: str = "standard",
          n_classes: int = 10, seed: int = 0, lo: float = 0.0, hi: float = 1.0,
          channels_last: bool = True, steps: int = STEPS,
          n_queries: int = N_QUERIES) -> Dict[str, Attack]:
    """{name: attack} of an AutoAttack version, in the order they run; steps: iterations
    of the APGD and FAB attacks, n_queries: Square's (the reference's 100 and 5000)."""
    if version not in VERSIONS:
        raise ValueError(f"version must be one of {', '.join(VERSIONS)}, got {version!r}")
    steps = positive_int(steps, "steps")
    n_queries = positive_int(n_queries, "n_queries")
    common = dict(eps=eps, norm=norm, seed=seed, lo=lo, hi=hi, channels_last=channels_last)
    targets = min(9, n_classes - 1)
    if version == "rand":
        return {"apgd-ce": APGD(model, loss="ce", steps=steps, eot_samples=20, **common),
                "apgd-dlr": APGD(model, loss="dlr", steps=steps, eot_samples=20, **common)}
    apgd_t = APGDTargeted(model, steps=steps, n_target_classes=targets, **common) \
        if n_classes >= 4 else None
    fab_t = FAB(model, steps=steps, n_target_classes=targets, **common)
    square = Square(model, n_queries=n_queries, **common)
    apgd_ce = APGD(model, loss="ce", steps=steps, restarts=1 if version == "standard" else 5,
                   **common)
    if version == "standard":
        out = {"apgd-ce": apgd_ce, "apgd-t": apgd_t, "fab-t": fab_t, "square": square}
    else:
        out = {"apgd-ce": apgd_ce,
               "apgd-dlr": APGD(model, loss="dlr", steps=steps, restarts=5, **common)
               if n_classes >= 3 else None,
               "fab": FAB(model, steps=steps, targeted=False, restarts=5, **common),
               "square": square, "apgd-t": apgd_t, "fab-t": fab_t}
    return {k: v for k, v in out.items() if v is not None}


def gradient_masking_check(robust_after: Mapping[str, float],
                           black_box: Sequence[str] = ("square",),
                           gap: float = BLACK_BOX_GAP) -> List[str]:
    """Problems (empty if none) when a black-box attack breaks samples the white-box
    attacks could not: gradients mislead the white-box attacks (masked or obfuscated),
    so their robust accuracy is not trustworthy.

    robust_after: robust accuracy (fraction) after each attack of a sequential suite, in
    run order; gap: the reference's tolerance (0.2 points of accuracy).
    """
    white = [v for k, v in robust_after.items() if k not in black_box]
    if not white:
        return []
    problems = []
    for name in black_box:
        if name in robust_after and robust_after[name] < min(white) - gap:
            drop = min(white) - robust_after[name]
            problems.append(
                f"the black-box {name} attack lowered the robust accuracy of the white-box "
                f"attacks by {100 * drop:.2f} points: their gradients are likely masked or "
                "obfuscated, so this robustness evaluation is unreliable; run Square with more "
                "queries and restarts, or an adaptive attack")
    return problems


@dataclasses.dataclass
class AutoAttackResult:
    """adversarial: (B, ...) the example that fooled the model (the input where robust or
    misclassified clean); robust: (B,) bool; clean: (B,) bool (correct on the input);
    robust_after: robust accuracy after each attack (cumulative, in run order); seconds:
    per attack; gradient_masking: problems found by gradient_masking_check."""

    adversarial: Tensor
    robust: Tensor
    clean: Tensor
    robust_after: Dict[str, float]
    seconds: Dict[str, float]
    gradient_masking: List[str]

    @property
    def robust_accuracy(self) -> float:
        return float(self.robust.float().mean())

    @property
    def clean_accuracy(self) -> float:
        return float(self.clean.float().mean())

    def table(self) -> str:
        lines = [f"{'attack':<12}{'robust':>10}{'seconds':>10}",
                 f"{'clean':<12}{100 * self.clean_accuracy:>9.2f}%"]
        for name, acc in self.robust_after.items():
            lines.append(f"{name:<12}{100 * acc:>9.2f}%{self.seconds.get(name, 0):>10.1f}")
        lines += [f"warning: {p}" for p in self.gradient_masking]
        return "\n".join(lines)


@contextlib.contextmanager
def _recording_fooling_points(atk: Attack, found: Tensor, have: Tensor):
    """While robust_mask runs, copy into found[i] an iterate that fooled sample i (its
    _step returns the logits of the iterate it started from) and mark have[i]; after the
    last step, the final iterate (which robust_mask evaluates without a _step) is checked
    once more, so every sample robust_mask counts as fooled has its point recorded, the
    copy (restart / target class) that fooled it included when they run batched."""
    inner = atk._step

    def record_fooled(state, fooled: Tensor, x: Optional[Tensor] = None) -> None:
        """Rows `fooled` of the state were fooled by x (default: state["x"], as Square's
        Q-queries-per-pass rounds report)."""
        # The read costs nothing on the CPU; on a GPU it is one sync per step beside the
        # early-exit check's (the fooled rows are few and change at few steps).
        if bool(fooled.any()):
            rows = state["_owner"][fooled]
            found[rows] = (state["x"] if x is None else x)[fooled].to(found.dtype)
            have[rows] = True

    def record(x: Tensor, logits: Tensor, state) -> None:
        record_fooled(state, logits.argmax(1) != state["y"], x)

    def step(state, k):
        x_old = state["x"]
        version = x_old._version
        logits = inner(state, k)
        if x_old._version != version:  # the steps replace state["x"]; none writes into it
            raise RuntimeError(f"internal: {type(atk).__name__}._step wrote into state['x']")
        record(x_old, logits, state)
        if k == atk.steps - 1:
            record(state["x"], atk.model(state["x"]), state)
        return logits

    atk._step = step
    if hasattr(atk, "_record_fooled"):
        atk._record_fooled = record_fooled
    try:
        yield
    finally:
        del atk._step
        atk.__dict__.pop("_record_fooled", None)


def square_queries_per_pass(work: int, most: int = SQUARE_MOST_QUERIES_PER_PASS) -> int:
    """Square's queries per pass (a power of two, 1 to `most`) for a model whose largest
    op on the attacked samples has `work` elements: as many as keep that op within one
    small op's work (robustops.intra_op_threads.SMALL_OP_GRAIN), where a pass costs its
    call more than its rows."""
    q = 1
    while q < most and 2 * q * work <= SMALL_OP_GRAIN:
        q *= 2
    return q


def _logits_and_largest_activation(model: nn.Module, x: Tensor) -> Tuple[Tensor, int]:
    """model(x) and the most elements any of its submodules output on x (the work of the
    largest op of a pass, which sets the CPU threads worth using)."""
    largest = [x.numel()]

    def hook(_module, _inputs, out):
        if isinstance(out, Tensor):
            largest[0] = max(largest[0], out.numel())

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        logits = model(x)
    finally:
        for h in handles:
            h.remove()
    return logits, largest[0]


class AutoAttack(Attack):
    """The AutoAttack suite as one Attack: robust_mask runs the suite (so robust_accuracy
    and `robustops eval --attack autoattack` take it), run() returns an AutoAttackResult.

    version: 'standard' | 'plus' | 'rand'; n_classes: the model's (sets the number of
    target classes, min(9, n_classes - 1); None: read from the model's output on the first
    batch); steps: APGD/FAB iterations and n_queries: Square's (the reference's 100 and
    5000: what evaluations report; fewer for a quick look); see Attack for eps, norm,
    seed, lo, hi.
    """

    def __init__(self, model, *, eps: Eps = 8 / 255, norm="linf", version: str = "standard",
                 n_classes: Optional[int] = None, seed: int = 0, lo: float = 0.0,
                 hi: float = 1.0, channels_last: bool = True, warn: bool = True,
                 steps: int = STEPS, n_queries: int = N_QUERIES):
        super().__init__(model, eps=eps, norm=norm, seed=seed, lo=lo, hi=hi,
                         channels_last=channels_last,
                         eot_samples=20 if version == "rand" else None)
        if version not in VERSIONS:
            raise ValueError(f"version must be one of {', '.join(VERSIONS)}, got {version!r}")
        self.version, self.warn = version, bool(warn)
        self.steps = positive_int(steps, "steps")
        self.n_queries = positive_int(n_queries, "n_queries")
        self.attacks: Dict[str, Attack] = {}
        if n_classes is not None:
            self._build(n_classes)

    def set_normalization_used(self, mean, std) -> "AutoAttack":
        super().set_normalization_used(mean, std)
        if self.attacks:  # already built around the old model
            self._build(self.n_classes)
        return self

    def _build(self, n_classes: int) -> None:
        self.n_classes = n_classes
        self.attacks = suite(self.model, eps=self.eps, norm=self.norm, version=self.version,
                             n_classes=n_classes, seed=self.seed, lo=self.lo, hi=self.hi,
                             channels_last=self.channels_last, steps=self.steps,
                             n_queries=self.n_queries)

    def run(self, x: Tensor, y: Tensor, *, index: Union[None, int, Tensor] = None,
            batch_restarts: bool = False) -> AutoAttackResult:
        """The suite on (x (B, ...) in [lo, hi], y (B,) int64), AutoAttack's order, early exit.

        The target classes of APGD-T and FAB-T always run in one replicated batch (the
        robust mask of the sequential run, one pass per step instead of one per target
        and step); batch_restarts batches the restarts of the other attacks too ('plus').
        """
        self._check_batch(x, y, None)
        b = x.shape[0]
        idx = sample_index(b, index, x.device)
        with attack_state(self.model, self.model_mode), torch.no_grad():
            logits, activation = _logits_and_largest_activation(self.model, x)
        if not self.attacks or logits.shape[1] != self.n_classes:
            self._build(logits.shape[1])  # n_classes=None: read from the model's output
        clean = logits.argmax(1) == y
        robust = clean.clone()
        adversarial = x.detach().clone()
        robust_after, seconds = {}, {}
        for name, atk in self.attacks.items():
            ids = robust.nonzero()[:, 0]
            t0 = time.perf_counter()
            # Rows per pass: the targeted attacks replicate the batch per target class,
            # Square evaluates several queries of a sample per pass.
            rows = ids.numel() * getattr(atk, "n_target_classes", 1)
            if isinstance(atk, Square):
                atk.queries_per_pass = square_queries_per_pass(activation // b * ids.numel())
                rows *= atk.queries_per_pass
            # On the CPU an attack is thousands of passes of ops on those rows: threads in
            # proportion to its largest op's work, at most the cores free when it starts.
            threads = threads_for(activation // b * rows, SUITE_OP_GRAIN) \
                if x.device.type == "cpu" else torch.get_num_threads()
            with intra_op_threads(threads):
                if ids.numel():
                    found = x[ids].detach().clone()
                    have = torch.zeros(ids.numel(), dtype=torch.bool, device=x.device)
                    batch = batch_restarts or getattr(atk, "n_target_classes", 1) > 1
                    with _recording_fooling_points(atk, found, have):
                        mask = atk.robust_mask(x[ids], y[ids], index=idx[ids], early_exit=True,
                                               batch_restarts=batch)
                    fooled = ~mask
                    if not bool(have[fooled].all()):
                        raise RuntimeError(f"internal: {name} fooled samples without a "
                                           "recorded adversarial example")
                    adversarial[ids[fooled]] = found[fooled]
                    robust[ids[fooled]] = False
                seconds[name] = time.perf_counter() - t0
                robust_after[name] = float(robust.float().mean())
        problems = gradient_masking_check(robust_after)
        if problems and self.warn:
            warnings.warn("autoattack: " + "; ".join(problems), RuntimeWarning, stacklevel=2)
        return AutoAttackResult(adversarial=adversarial, robust=robust, clean=clean,
                                robust_after=robust_after, seconds=seconds,
                                gradient_masking=problems)

    def perturb(self, x: Tensor, y: Tensor, *, target: Optional[Tensor] = None,
                index: Union[None, int, Tensor] = None, start: Optional[Tensor] = None) -> Tensor:
        if target is not None or start is not None:
            raise ValueError("AutoAttack is untargeted and picks its own starts")
        return self.run(x, y, index=index).adversarial

    def robust_mask(self, x: Tensor, y: Tensor, *, index: Union[None, int, Tensor] = None,
                    early_exit: bool = True, batch_restarts: bool = False) -> Tensor:
        """(B,) bool: True where no attack of the suite fooled the model (early exit always)."""
        return self.run(x, y, index=index, batch_restarts=batch_restarts).robust


def autoattack(model: nn.Module, x: Tensor, y: Tensor, *, norm: str = "linf",
               eps: float = 8 / 255, version: str = "standard", n_classes: Optional[int] = None,
               seed: int = 0, lo: float = 0.0, hi: float = 1.0,
               index: Union[None, int, Tensor] = None, batch_restarts: bool = False,
               warn: bool = True, steps: int = STEPS, n_queries: int = N_QUERIES
               ) -> AutoAttackResult:
    """AutoAttack on a batch: adversarial examples, the robust mask, per-attack robust
    accuracy and the gradient-masking check (a RuntimeWarning when it trips, warn=True).

    x: (B, C, H, W) in [lo, hi]; y: (B,) int64; n_classes: read from the model's output
    when None. See AutoAttack.
    """
    atk = AutoAttack(model, eps=eps, norm=norm, version=version, n_classes=n_classes, seed=seed,
                     lo=lo, hi=hi, warn=warn, steps=steps, n_queries=n_queries)
    return atk.run(x, y, index=index, batch_restarts=batch_restarts)
