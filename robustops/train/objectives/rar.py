"""Robust attribution regularisation (RAR; Chen et al., 2019): IG-NORM and IG-SUM-NORM.

METHODS.md section 5, with IG^CE(x -> x') the integrated gradients of the per-sample
cross-entropy from x to x':

    IG-NORM:      CE(f(x), y) + lambda * max_{x' in B_inf(x, eps)} ||IG^CE(x -> x')||_1
    IG-SUM-NORM:  max_{x' in B_inf(x, eps)} [CE(f(x'), y) + beta * ||IG^CE(x -> x')||_1]

The inner maximisation is PGD (sign steps, projection onto the eps-ball and [0, 1])
on an approximate IG with m // approx_factor path points, the model frozen in eval
mode; the outer loss evaluates the IG with m points and create_graph=True, so its
parameter gradient is a double backprop through the model (path gradients are
functions of the parameters). x' is a constant of the outer loss (Danskin).

Mode: the attribution terms run with the model in eval mode by default
(attribution_mode='eval'): a batch of m*B path points through BatchNorm in train
mode would normalise samples with each other's path points and pollute the
running statistics; the CE term uses the model's own (train) mode.

Defaults are METHODS.md's GTSRB/Flower configuration (eps 8/255, 7 steps of 2/255,
m = 50, approx_factor 4); ``for_dataset('mnist' | 'fmnist' | 'gtsrb' | 'flower')``
gives the per-dataset PGD settings.
"""
from __future__ import annotations

import contextlib
from typing import Dict, Iterator, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...arguments import non_negative, positive_int
from ...attacks.model_state import attack_state
from ...attributions.integrated_gradients import integrated_gradients
from ...ops.pgd_step import pgd_step_
from ...random_init import random_init
from .base import Objective, accuracy

__all__ = ["IGNorm", "IGSumNorm", "RAR_CONFIGS", "ig_ce", "attribution_pgd", "model_mode",
           "ce_loss"]

# METHODS.md's RAR PGD settings per dataset: (eps, alpha, steps).
RAR_CONFIGS: Dict[str, Tuple[float, float, int]] = {
    "mnist": (0.3, 0.01, 40),
    "fmnist": (0.1, 0.01, 20),
    "gtsrb": (8 / 255, 2 / 255, 7),
    "flower": (8 / 255, 2 / 255, 7),
}


@contextlib.contextmanager
def model_mode(model: nn.Module, mode: str) -> Iterator[nn.Module]:
    """Run a block with the model in 'eval' or 'train' mode ('as_is': untouched); restore
    every submodule's flag afterwards. Parameters keep requires_grad (unlike attack_state)."""
    if mode not in ("eval", "train", "as_is"):
        raise ValueError(f"mode must be 'eval', 'train' or 'as_is', got {mode!r}")
    flags = [(m, m.training) for m in model.modules()]
    try:
        if mode != "as_is":
            model.train(mode == "train")
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


def ig_ce(model: nn.Module, x: Tensor, x_adv: Tensor, y: Tensor, steps: int, *,
          create_graph: bool, internal_batch_size: Optional[int] = None) -> Tensor:
    """IG^CE(x -> x_adv): integrated gradients of the per-sample CE from x to x_adv, (B, ...)."""
    return integrated_gradients(model, x_adv, y, baseline=x, steps=steps, output="ce",
                                create_graph=create_graph,
                                internal_batch_size=internal_batch_size)


def ce_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Mean CE, computed in float32 for half/bfloat16 logits (autocast) and in their own
    precision otherwise (float64 stays float64: the finite-difference tests need it)."""
    if logits.dtype not in (torch.float32, torch.float64):
        logits = logits.float()
    return F.cross_entropy(logits, y)


def l1(t: Tensor) -> Tensor:
    """Per-sample L1 norm (B,)."""
    return t.abs().flatten(1).sum(1)


def attribution_pgd(model: nn.Module, x: Tensor, y: Tensor, *, eps: float, alpha: float,
                    steps: int, ig_steps: int, beta: float, include_ce: bool,
                    random_start: bool = True, seed: int = 0, index=None,
                    internal_batch_size: Optional[int] = None) -> Tensor:
    """The RAR inner maximisation: PGD on [CE(f(x'), y) if include_ce] + beta ||IG^CE(x -> x')||_1.

    L-inf ball of radius eps around x intersected with [0, 1]; `steps` sign steps of
    alpha from a random start keyed by (seed, sample index); the model frozen in eval
    mode. Returns x' (B, ...) detached. Keep the random start for IG-NORM: at x' = x the
    IG is 0 and the gradient of its L1 norm vanishes (|.|'(0) = 0), so PGD started at x
    without the CE term never moves.
    """
    x_nat = x.detach()
    with attack_state(model, "eval"):
        x_adv = (random_init(x_nat, eps, "linf", seed, index=index) if random_start
                 else x_nat.clone())
        for _ in range(steps):
            xr = x_adv.detach().requires_grad_(True)
            with torch.enable_grad():
                obj = beta * l1(ig_ce(model, x_nat, xr, y, ig_steps, create_graph=True,
                                      internal_batch_size=internal_batch_size))
                if include_ce:
                    obj = obj + F.cross_entropy(model(xr), y, reduction="none")
                (g,) = torch.autograd.grad(obj.sum(), xr)
            with torch.no_grad():
                pgd_step_(x_adv, x_nat, g, eps, alpha)
    return x_adv.detach()


class _RARObjective(Objective):
    """Shared configuration of the attribution-regularised objectives."""

    def __init__(self, *, eps: float, alpha: float, steps: int, m: int, approx_factor: int,
                 random_start: bool, attribution_mode: str, internal_batch_size: Optional[int],
                 seed: int):
        self.eps = non_negative(eps, "eps")
        self.steps = positive_int(steps, "steps")
        # None: PGD's rule 2.5 eps / steps (what `robustops train` passes when unset).
        self.alpha = 2.5 * self.eps / self.steps if alpha is None else non_negative(alpha, "alpha")
        self.m = positive_int(m, "m")
        self.approx_factor = positive_int(approx_factor, "approx_factor")
        self.random_start = bool(random_start)
        if attribution_mode not in ("eval", "train", "as_is"):
            raise ValueError(f"attribution_mode must be 'eval', 'train' or 'as_is', got "
                             f"{attribution_mode!r}")
        self.attribution_mode = attribution_mode
        if internal_batch_size is not None:
            positive_int(internal_batch_size, "internal_batch_size")
        self.internal_batch_size = internal_batch_size
        self.seed = int(seed)
        self._calls = 0

    @property
    def inner_steps(self) -> int:
        """Path points of the inner maximisation's approximate IG: m // approx_factor (>= 1)."""
        return max(1, self.m // self.approx_factor)

    @classmethod
    def for_dataset(cls, name: str, **overrides):
        """The objective with METHODS.md's PGD settings for 'mnist', 'fmnist', 'gtsrb', 'flower'."""
        if name not in RAR_CONFIGS:
            raise ValueError(f"unknown dataset {name!r}; known: {', '.join(RAR_CONFIGS)}")
        eps, alpha, steps = RAR_CONFIGS[name]
        return cls(**{"eps": eps, "alpha": alpha, "steps": steps, **overrides})

    def _inner(self, model, x, y, beta: float, include_ce: bool) -> Tensor:
        # A fresh seed per call: new random starts every batch, yet reproducible.
        self._calls += 1
        return attribution_pgd(model, x, y, eps=self.eps, alpha=self.alpha, steps=self.steps,
                               ig_steps=self.inner_steps, beta=beta, include_ce=include_ce,
                               random_start=self.random_start,
                               seed=self.seed * 1_000_003 + self._calls,
                               internal_batch_size=self.internal_batch_size)

    def _ig_ce(self, model, x, x_adv, y) -> Tensor:
        with model_mode(model, self.attribution_mode):
            return ig_ce(model, x, x_adv, y, self.m, create_graph=True,
                         internal_batch_size=self.internal_batch_size)

    def state_dict(self):
        return {"calls": self._calls}

    def load_state_dict(self, state):
        self._calls = int(state.get("calls", 0))


class IGNorm(_RARObjective):
    """IG-NORM: CE(f(x), y) + lambda * ||IG^CE(x -> x')||_1 at the inner maximiser x' of the norm.

    eps, alpha (None: 2.5 eps / steps), steps: the inner PGD; m: IG path points of the
    outer term (the inner uses m // approx_factor); lam: the regulariser's weight.
    """

    name = "ig_norm"

    def __init__(self, eps: float = 8 / 255, alpha: float = 2 / 255, steps: int = 7,
                 lam: float = 1.0, m: int = 50, approx_factor: int = 4,
                 random_start: bool = True, attribution_mode: str = "eval",
                 internal_batch_size: Optional[int] = None, seed: int = 0):
        super().__init__(eps=eps, alpha=alpha, steps=steps, m=m, approx_factor=approx_factor,
                         random_start=random_start, attribution_mode=attribution_mode,
                         internal_batch_size=internal_batch_size, seed=seed)
        self.lam = non_negative(lam, "lam")

    def adversarial(self, model, x, y) -> Tensor:
        return self._inner(model, x, y, beta=1.0, include_ce=False)

    def loss(self, model, x, x_adv, y) -> Tuple[Tensor, Dict[str, Tensor]]:
        """The outer loss at a given x_adv (a constant)."""
        logits = model(x)
        ce = ce_loss(logits, y)
        reg = l1(self._ig_ce(model, x, x_adv, y)).mean()
        return ce + self.lam * reg, {"acc": accuracy(logits, y), "ig_l1": reg.detach()}

    def compute(self, model, x, y, *, replay=0):
        return self.loss(model, x, self.adversarial(model, x, y), y)


class IGSumNorm(_RARObjective):
    """IG-SUM-NORM: CE(f(x'), y) + beta * ||IG^CE(x -> x')||_1 at the inner maximiser x' of the sum.

    eps, alpha, steps: the inner PGD; m: IG path points of the outer term (the inner
    uses m // approx_factor); beta: the norm's weight inside and outside.
    """

    name = "ig_sum_norm"

    def __init__(self, eps: float = 8 / 255, alpha: float = 2 / 255, steps: int = 7,
                 beta: float = 1.0, m: int = 50, approx_factor: int = 4,
                 random_start: bool = True, attribution_mode: str = "eval",
                 internal_batch_size: Optional[int] = None, seed: int = 0):
        super().__init__(eps=eps, alpha=alpha, steps=steps, m=m, approx_factor=approx_factor,
                         random_start=random_start, attribution_mode=attribution_mode,
                         internal_batch_size=internal_batch_size, seed=seed)
        self.beta = non_negative(beta, "beta")

    def adversarial(self, model, x, y) -> Tensor:
        return self._inner(model, x, y, beta=self.beta, include_ce=True)

    def loss(self, model, x, x_adv, y) -> Tuple[Tensor, Dict[str, Tensor]]:
        """The outer loss at a given x_adv (a constant)."""
        logits = model(x_adv)
        ce = ce_loss(logits, y)
        reg = l1(self._ig_ce(model, x, x_adv, y)).mean()
        return ce + self.beta * reg, {"adv_acc": accuracy(logits, y), "ig_l1": reg.detach()}

    def compute(self, model, x, y, *, replay=0):
        return self.loss(model, x, self.adversarial(model, x, y), y)
