"""Shared machinery of the gradient attacks: validation, model state, EOT gradients,
restarts, and robust-accuracy evaluation with early exit.

An attack is a state machine over per-sample tensors: `_start` builds the state
for a batch from its starting point, `_step` takes one step (returning the
logits of the iterate it started from), `_result` picks the adversarial example.
Because every entry of the state has the batch as its first dimension, early
exit can drop broken samples by indexing the state, and the survivors follow
exactly the trajectory they would have followed in the full batch (per-sample
losses are summed, random starts are keyed by global sample index).

Host syncs (pinned by tests/sync/ with robustops.sync_counter.SyncCounter): a step
makes none, so `perturb` runs its steps without one. Early exit must read on the host
which samples are broken, one sync; it does so once every `check_every` steps (see
Attack) and records the hits in between on the device.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from ..arguments import check_labels, positive_int, require_int, require_real
from ..counter_rng import sample_index
from ..image_box import Bound, bounds_like, check_bounds, describe_box, outer_box
from ..ops.pgd_step import normalize_norm, pgd_step_
from ..random_init import random_init
from .losses import attack_loss, check_loss_name
from .model_state import MODES, attack_state, default_eot_samples

State = Dict[str, Union[Tensor, float]]

# Steps between two early-exit checks (each one host sync); docs/RESULTS.md, "Host
# syncs". On a CPU a sync is free and a larger value only adds the passes spent on broken
# samples until the next check: PGD-20 on a SmallCNN (MNIST, 118 images) made 1.7% more
# sample-passes at 4 than at 1 where 78% of the samples stay robust, 21% more where
# nearly all break in the first steps. On a GPU each check drains the launch queue and
# leaves the GPU idle while the next step is queued (up to a step's launch time for a
# small model, whose extra rows are nearly free); 4 cuts those stalls 4-fold.
DEFAULT_CHECK_EVERY = 4
Eps = Union[float, Tensor]


def check_eps(eps, name: str = "eps") -> Eps:
    """A finite float >= 0 or a floating (B,) tensor (values checked when used): a
    TypeError for another type (a str, None, a bool), a ValueError for nan, inf or < 0."""
    if isinstance(eps, Tensor):
        if not eps.is_floating_point() or eps.ndim != 1:
            raise ValueError(f"{name} as a tensor must be a floating (B,) tensor, got "
                             f"{tuple(eps.shape)} {eps.dtype}")
        return eps
    return require_real(eps, name, low=0, what="a finite number >= 0 (or a (B,) tensor)")


def compact(state: State, keep: Tensor) -> State:
    """The state of the samples in `keep` (a bool mask or an index tensor)."""
    return {k: (v[keep] if isinstance(v, Tensor) and v.ndim >= 1 else v) for k, v in state.items()}


class Attack:
    """Base class of the iterative gradient attacks (see module docstring).

    model: any nn.Module returning logits (B, K); eps: float or (B,) tensor;
    norm: 'linf' | 'l2'; loss: 'ce' | 'margin' | 'dlr'; lo, hi: the image box, floats
    or (attacks with per_channel_bounds: PGD, FGSM, APGD) one value per channel, a (C,) or
    (1, C, 1, 1) tensor, for an attack in a normalised input space ((0 - mean) / std,
    (1 - mean) / std); mean, std: the model expects inputs normalised so (one value per
    channel, or one for all): the attack works on [lo, hi] pixels and feeds the model
    (x - mean) / std (as set_normalization_used);
    model_mode: 'eval' | 'train' | 'as_is' during the attack (restored after);
    eot_samples: gradients averaged over this many forward passes; None (default):
    8 for a model that declares itself stochastic (a submodule with `stochastic =
    True`, e.g. VOneBlock with fresh noise), else 1; restarts: independent random starts; seed: keys every random draw;
    channels_last: attack 4-D images in channels_last layout (oneDNN/cuDNN run
    convolutions ~1.2-1.6x faster so, whatever the model's own layout; results
    come back in the caller's layout); check_every: early exit (robust_mask) reads
    which samples are broken once every this many steps, one host sync each (default
    DEFAULT_CHECK_EVERY). The robust mask does not depend on it: hits are recorded on
    the device at every step; a larger value means fewer syncs (a GPU's launch queue
    drains at each) but up to check_every - 1 extra passes on samples already broken.
    """

    steps: int = 1
    # Whether lo/hi may be per-channel tensors: the attacks whose every clamp goes through
    # _pgd_step_ / _clamp_box_ say so; the others refuse such bounds with a clear error.
    per_channel_bounds: bool = False
    # Set by perturb / robust_mask: the next loss_and_grad checks the labels against the
    # model's number of classes (once per call; no host sync per step).
    _labels_unchecked: bool = False

    def __init__(self, model: nn.Module, *, eps: Eps = 8 / 255, norm="linf", loss: str = "ce",
                 random_start: bool = True, restarts: int = 1, lo: Bound = 0.0, hi: Bound = 1.0,
                 model_mode: str = "eval", eot_samples: Optional[int] = None, seed: int = 0,
                 channels_last: bool = True, check_every: int = DEFAULT_CHECK_EVERY,
                 mean=None, std=None):
        if not callable(model):
            raise TypeError(f"model must be an nn.Module returning logits, got {type(model).__name__}")
        self.model = model
        self.eps = check_eps(eps)
        self.norm = normalize_norm(norm)
        self.loss = check_loss_name(loss)
        self.random_start = bool(random_start)
        self.restarts = positive_int(restarts, "restarts")
        name = type(self).__name__
        self.lo, self.hi = check_bounds(lo, hi, name)
        if isinstance(self.lo, Tensor) and not self.per_channel_bounds:
            raise ValueError(f"{name} takes lo/hi as floats, not per channel; attack on [0, 1] "
                             "pixels with mean=/std= (or robustops.normalized(model, mean, std))")
        # (device, dtype, ndim) -> lo/hi shaped for such a batch: copied to the device once.
        self._box_cache: Dict[tuple, tuple] = {}
        if model_mode not in MODES:
            raise ValueError(f"model_mode must be one of {', '.join(MODES)}, got {model_mode!r}")
        self.model_mode = model_mode
        self.eot_samples = positive_int(default_eot_samples(model, eot_samples), "eot_samples")
        self.seed = require_int(seed, "seed")
        self.channels_last = bool(channels_last)
        self.check_every = positive_int(check_every, "check_every")
        if (mean is None) != (std is None):
            raise ValueError(f"{name}: mean and std go together (the model expects (x - mean) "
                             "/ std); give both or neither")
        if mean is not None:
            self.set_normalization_used(mean, std)

    # ------------------------------------------------------------------ subclass hooks

    def _start(self, x0: Tensor, x_nat: Tensor, y: Tensor, target: Optional[Tensor],
               eps: Eps, ids: Optional[Tensor]) -> State:
        """State for a batch; ids: positions of its samples in the caller's batch (None: all)."""
        raise NotImplementedError

    def _step(self, state: State, k: int) -> Tensor:
        """Advance the state by one iterate; return the (detached) logits of the old one."""
        raise NotImplementedError

    def _result(self, state: State) -> Tensor:
        return state["x"]

    # ------------------------------------------------------------------ shared pieces

    def loss_and_grad(self, x: Tensor, y: Tensor, target: Optional[Tensor]):
        """Per-sample loss (B,), d(sum loss)/dx averaged over EOT draws, and first logits."""
        with torch.enable_grad():
            xr = x.detach().requires_grad_(True)
            grad, first_logits, first_loss = None, None, None
            for _ in range(self.eot_samples):
                logits = self.model(xr)
                if self._labels_unchecked:
                    self._labels_unchecked = False
                    check_labels(logits, y, target)
                loss = attack_loss(logits, y, self.loss, target)
                (g,) = torch.autograd.grad(loss.sum(), xr)
                grad = g if grad is None else grad + g
                if first_logits is None:
                    first_logits, first_loss = logits.detach(), loss.detach()
        if self.eot_samples > 1:
            grad = grad / self.eot_samples
        return first_loss, grad, first_logits

    def _check_batch(self, x: Tensor, y: Tensor, target: Optional[Tensor]) -> None:
        if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim < 2:
            raise TypeError("x must be a floating tensor of images (B, C, H, W) in [lo, hi]")
        if x.shape[0] == 0:
            raise ValueError("empty batch: nothing to attack")
        for name, t in (("y", y), ("target", target)):
            if t is None:
                continue
            if not isinstance(t, Tensor) or t.dtype != torch.int64 or tuple(t.shape) != (x.shape[0],):
                raise ValueError(f"{name} must be an int64 tensor of shape ({x.shape[0]},)")
        if isinstance(self.eps, Tensor) and self.eps.shape[0] != x.shape[0]:
            raise ValueError(f"per-sample eps has {self.eps.shape[0]} entries for a batch of {x.shape[0]}")
        self._check_box(x)

    def _check_box(self, x: Tensor) -> None:
        """x within [lo, hi] (normalised data would be clamped into garbage), without a host
        read: torch._assert_async (on a GPU a device-side assert; on the CPU it raises at
        once, turned here into the ValueError robust_accuracy's hygiene check gives)."""
        lo, hi = self._box(x)
        inside = ((x >= lo) & (x <= hi)).all()
        msg = (f"inputs outside {describe_box(self.lo, self.hi)} (or not finite): the attacks "
               "work on pixels; normalise inside the model (robustops.normalized(model, mean, "
               "std), mean=/std= or attack.set_normalization_used(mean, std)), not in the data")
        if x.device.type != "cpu":
            torch._assert_async(inside, msg)
            return
        try:
            torch._assert_async(inside, msg)
        except RuntimeError:
            raise ValueError(f"inputs span [{x.min().item():.4g}, {x.max().item():.4g}]; "
                             + msg) from None

    def _box(self, x: Tensor) -> Tuple[Bound, Bound]:
        """lo, hi for the batch x: floats, or (1, C, 1, ..., 1) tensors on x's device and
        dtype (cached: no copy to the device per step)."""
        if isinstance(self.lo, float):
            return self.lo, self.hi
        key = (x.device, x.dtype, x.ndim)
        if key not in self._box_cache:
            self._box_cache[key] = bounds_like(self.lo, self.hi, x)
        return self._box_cache[key]

    def _clamp_box_(self, x: Tensor) -> Tensor:
        """x clamped into the box in place (per channel where lo/hi are)."""
        lo, hi = self._box(x)
        return x.clamp_(lo, hi)

    def _pgd_step_(self, x: Tensor, x_nat: Tensor, grad: Tensor, eps: Eps, alpha: Eps) -> Tensor:
        """pgd_step_ (in place) in this attack's norm and box. Float bounds: the fused op
        alone. Per-channel bounds: the op in the range that holds every channel's, then a
        per-channel clamp; exact, as the op clamps last and elementwise, and clamping into
        a box after clamping into a larger one is clamping into the box."""
        if isinstance(self.lo, float):
            return pgd_step_(x, x_nat, grad, eps, alpha, norm=self.norm, lo=self.lo, hi=self.hi)
        lo, hi = outer_box(self.lo, self.hi)
        pgd_step_(x, x_nat, grad, eps, alpha, norm=self.norm, lo=lo, hi=hi)
        return self._clamp_box_(x)

    def _working_copy(self, x: Tensor) -> Tensor:
        """x detached, in the layout the attack computes in."""
        if self.channels_last and x.ndim == 4:
            return x.detach().contiguous(memory_format=torch.channels_last)
        return x.detach()

    def _eps_for(self, x: Tensor) -> Eps:
        return self.eps.to(x.device, torch.float32) if isinstance(self.eps, Tensor) else self.eps

    def _x0(self, x_nat: Tensor, eps: Eps, index: Tensor, restart: int) -> Tensor:
        if not self.random_start:
            return x_nat.clone()
        return random_init(x_nat, eps, self.norm, self.seed, index=index, restart=restart,
                           lo=self.lo, hi=self.hi)

    # ------------------------------------------------------------------ public API

    def set_normalization_used(self, mean, std) -> "Attack":
        """torchattacks' call for a model that expects inputs normalised per channel:
        the attack keeps working on [lo, hi] pixels (eps, projections and clamps there) and
        feeds the model (x - mean) / std. mean, std: one value per channel (or one for all).
        Calling it again replaces the normalisation. Returns the attack."""
        from ..nn.normalize import normalized
        self._unnormalized_model = getattr(self, "_unnormalized_model", self.model)
        self.model = normalized(self._unnormalized_model, mean, std)
        return self

    def __call__(self, x: Tensor, y: Tensor, *, target: Optional[Tensor] = None,
                 index: Union[None, int, Tensor] = None) -> Tensor:
        return self.perturb(x, y, target=target, index=index)

    def perturb(self, x: Tensor, y: Tensor, *, target: Optional[Tensor] = None,
                index: Union[None, int, Tensor] = None, start: Optional[Tensor] = None) -> Tensor:
        """Adversarial examples (B, ...) for x (B, ...) in [lo, hi] with labels y (B,).

        target: (B,) labels for a targeted attack; index: global sample indices
        (or the offset of the first) keying the random starts; start: an explicit
        starting point (B, ...) instead of the random start (one restart only).
        With several restarts, each sample keeps the first restart that fools
        the model, else the last one.
        """
        self._check_batch(x, y, target)
        if start is not None and (start.shape != x.shape or self.restarts != 1):
            raise ValueError("start must have x's shape, and works with restarts=1 only")
        self._labels_unchecked = True
        idx = sample_index(x.shape[0], index, x.device)
        x_nat = self._working_copy(x)
        eps = self._eps_for(x)
        best, done = None, None
        layout = torch.channels_last if (x.ndim == 4 and not x.is_contiguous() and x.is_contiguous(
            memory_format=torch.channels_last)) else torch.contiguous_format
        with attack_state(self.model, self.model_mode), torch.no_grad():
            for r in range(self.restarts):
                x0 = self._x0(x_nat, eps, idx, r) if start is None else self._working_copy(start).clone()
                state = self._start(x0, x_nat, y, target, eps, None)
                for k in range(self.steps):
                    self._step(state, k)
                adv = self._result(state)
                if self.restarts == 1:
                    return adv.contiguous(memory_format=layout)
                fooled = self._fooled(self.model(adv), y, target)
                if best is None:
                    best, done = adv.clone(), fooled
                else:
                    take = (fooled & ~done).reshape(-1, *([1] * (x.ndim - 1)))
                    best = torch.where(take | ~done.reshape(take.shape), adv, best)
                    done = done | fooled
        return best.contiguous(memory_format=layout)

    @staticmethod
    def _fooled(logits: Tensor, y: Tensor, target: Optional[Tensor]) -> Tensor:
        pred = logits.argmax(dim=1)
        return pred == target if target is not None else pred != y

    def robust_mask(self, x: Tensor, y: Tensor, *, index: Union[None, int, Tensor] = None,
                    early_exit: bool = True, batch_restarts: bool = False) -> Tensor:
        """(B,) bool: True where NO iterate of ANY restart is misclassified.

        early_exit drops a sample from the working batch once one of its iterates
        fools the model, so later passes are spent only on samples still standing;
        batch_restarts runs all restarts in one replicated batch (fewer, larger
        passes). Both give the result of the full sequential run.

        Host syncs: none without early exit. With it, every iterate's hits are
        recorded on the device, and the broken samples are dropped at checks, one
        host sync each: after every `check_every`-th step (floor(steps / check_every)
        per round of restarts, fewer once every sample is broken) and at the start of
        each round but the first. The mask does not depend on check_every.
        """
        self._check_batch(x, y, None)
        self._labels_unchecked = True
        b = x.shape[0]
        idx = sample_index(b, index, x.device)
        x_nat = self._working_copy(x)
        eps = self._eps_for(x)
        robust = torch.ones(b, dtype=torch.bool, device=x.device)
        everyone = torch.arange(b, device=x.device)
        rounds = [list(range(self.restarts))] if batch_restarts else \
            [[r] for r in range(self.restarts)]
        with attack_state(self.model, self.model_mode), torch.no_grad():
            for i, restarts in enumerate(rounds):
                # Before the first round every sample stands (known without a sync).
                ids = robust.nonzero()[:, 0] if early_exit and i > 0 else everyone
                if ids.numel() == 0:
                    break
                # One copy of each standing sample per restart; `owner` maps copies to samples.
                owner = ids.repeat(len(restarts))
                e = eps[owner] if isinstance(eps, Tensor) else eps
                e_ids = eps[ids] if isinstance(eps, Tensor) else eps
                x0 = torch.cat([self._x0(x_nat[ids], e_ids, idx[ids], r) for r in restarts])
                state = self._start(x0, x_nat[owner], y[owner], None, e, owner)
                state["_owner"] = owner
                hits = self._attack_round(state, b, early_exit)
                robust &= hits == 0
        return robust

    def _attack_round(self, state: State, b: int, early_exit: bool) -> Tensor:
        """Run the steps on `state`; (b,) int32 count of the fooling iterates per sample.

        Every iterate's hits go into the count on the device; with early_exit, every
        check_every steps one host sync finds the rows whose sample has a hit and drops
        them (the survivors' trajectories do not depend on the rows around them).
        """
        hits = torch.zeros(b, dtype=torch.int32, device=state["_owner"].device)
        for k in range(self.steps + 1):
            logits = self._step(state, k) if k < self.steps else self.model(state["x"])
            fooled = logits.argmax(dim=1) != state["y"]
            hits.index_add_(0, state["_owner"], fooled.int())
            if early_exit and k < self.steps and (k + 1) % self.check_every == 0:
                keep = (hits[state["_owner"]] == 0).nonzero()[:, 0]  # the check's one sync
                if keep.numel() == 0:
                    break
                if keep.numel() < state["_owner"].numel():
                    state = compact(state, keep)
        return hits

    def robust_mask_multi_eps(self, x: Tensor, y: Tensor, eps_values: Sequence[float], *,
                              index: Union[None, int, Tensor] = None,
                              early_exit: bool = True) -> Tensor:
        """(len(eps_values), B) robust masks, all eps attacked in one replicated batch."""
        eps_values = [check_eps(float(e)) for e in eps_values]
        if not eps_values:
            raise ValueError("eps_values is empty")
        b = x.shape[0]
        idx = sample_index(b, index, x.device)
        k = len(eps_values)
        per_sample = torch.tensor(eps_values, device=x.device).repeat_interleave(b)
        saved = self.eps
        self.eps = per_sample
        try:
            mask = self.robust_mask(x.repeat(k, *([1] * (x.ndim - 1))), y.repeat(k),
                                    index=idx.repeat(k), early_exit=early_exit)
        finally:
            self.eps = saved
        return mask.reshape(k, b)
