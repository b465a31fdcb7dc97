"""TENET training (METHODS.md section 2): plain steps plus group-wise inhibition steps.

The schedule of the paper's code (LinusWu/TENET_Training, main.py), counted in iterations
(minibatches) t = 1, 2, ...:

- every iteration: the base objective's step(s) (CE, or free AT's replays);
- when t >= warmup_iters (500) and t % every == 0 (every 3rd): after each base step, one
  extra optimizer step on L_T = 0.1 * CE(masked forward) + 1e-3 * L_orth, computed by
  robustops.nn.GroupInhibition on the samples that base step's forward classified
  correctly (its inputs: the clean images, or free AT's adversarial ones). With no such
  sample the extra step is a no-op (zero loss, no gradient: the optimizer skips it); under
  DDP such a rank runs a zero-weighted forward instead, so that its gradients are still
  all-reduced with the other ranks' (then weight decay and momentum do move it).

The Trainer takes `replays` optimizer steps per minibatch; this objective asks for twice
the base objective's on inhibition iterations (base, TENET, base, TENET, ...), so the
TENET step is an ordinary Trainer step (LR schedule, clipping, autocast, DDP). The
iteration counter, the k-means draw counter and the base objective's state (free AT's
perturbation) are checkpointed with the objective.

Free-AT variant (the paper code's train_adv_cifar): ``TenetFreeAT`` (or
``TenetObjective.free_at()``) wraps robustops' FreeAT (4 replays, eps 4/255) and inhibits
after every replay of every iteration from warmup_iters on (every = 1), as that code does.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ...arguments import non_negative, positive_int, require_int
from ...distributed import rank_world
from ...nn.group_inhibition import GroupInhibition, find_layer, unwrap_model
from .base import Objective
from .ce import CrossEntropy
from .free_at import FreeAT


class TenetObjective(Objective):
    """CE (or another base objective) plus TENET's inhibition steps; see the module docstring.

    layer: the feature map's layer name (ResNeXt-29: "stage2"; torchvision ResNet:
    "layer2" or "layer3"). num_groups, max_iter, shift_threshold: the k-means (6, 50, 1e-4).
    warmup_iters: first iteration (1-based) that may inhibit (500); every: inhibit on
    iterations t % every == 0 (3). tenet_weight, orth_weight: L_T = tenet_weight * CE +
    orth_weight * L_orth (0.1, 1e-3). base: the objective of the normal steps (default
    CrossEntropy()). seed: keys the k-means initialisation.
    """

    name = "tenet"

    def __init__(self, layer: str = "stage2", *, num_groups: int = 6, warmup_iters: int = 500,
                 every: int = 3, tenet_weight: float = 0.1, orth_weight: float = 1e-3,
                 base: Optional[Objective] = None, max_iter: int = 50,
                 shift_threshold: float = 1e-4, seed: int = 0):
        where = "TenetObjective"
        warmup_iters = require_int(warmup_iters, "warmup_iters", where=where, minimum=0)
        every = require_int(every, "every", where=where, minimum=1)
        num_groups = require_int(num_groups, "num_groups", where=where, minimum=1)
        tenet_weight = non_negative(tenet_weight, "tenet_weight", where=where)
        orth_weight = non_negative(orth_weight, "orth_weight", where=where)
        # channel_kmeans' own checks, here so that a bad value fails now, not at warmup_iters.
        max_iter = positive_int(max_iter, "max_iter", where=where)
        shift_threshold = non_negative(shift_threshold, "shift_threshold", where=where)
        seed = require_int(seed, "seed", where=where)
        if base is not None and (isinstance(base, TenetObjective)
                                 or not isinstance(base, Objective)):
            raise TypeError("TenetObjective: base must be a (non-TENET) robustops Objective")
        self.layer, self.num_groups = layer, num_groups
        self.warmup_iters, self.every = warmup_iters, every
        self.tenet_weight, self.orth_weight = tenet_weight, orth_weight
        self.max_iter, self.shift_threshold, self.seed = max_iter, shift_threshold, seed
        self.base = base if base is not None else CrossEntropy()
        self.iteration = 0     # completed iterations (minibatches)
        self.drawn = 0         # samples grouped so far: the k-means' sample index offset
        self._inhibition: Optional[GroupInhibition] = None
        self._plan = 1         # replays of the current iteration
        self._replay = 0
        self._last = None      # (x, logits) of the base objective's last model call
        self._base_metrics: dict = {}
        self._checked: Optional[torch.nn.Module] = None  # the model whose layer was found

    @classmethod
    def free_at(cls, layer: str = "stage2", **kw) -> "TenetFreeAT":
        """The adversarial variant: TenetFreeAT(layer, eps=4/255, replays=4, every=1, ...)."""
        return TenetFreeAT(layer, **kw)

    # ------------------------------------------------------------------ schedule

    def inhibits(self, t: int) -> bool:
        """Whether iteration t (1-based) has inhibition steps."""
        return t >= self.warmup_iters and t % self.every == 0

    @property
    def replays(self) -> int:  # read by the Trainer at the start of each minibatch
        base = self.base.replays
        return 2 * base if self.inhibits(self.iteration + 1) else base

    # ------------------------------------------------------------------ Objective API

    def check_model(self, model, example: Optional[Tensor] = None) -> None:
        """Raise ValueError now, not at the first inhibition step (iteration warmup_iters),
        if `layer` cannot be inhibited on `model`: no layer of that name, or (with
        `example`, an input batch, run once in eval mode without gradients) an output
        that is not a (B, C, H, W) map with at least num_groups channels."""
        inner = unwrap_model(model)
        layer = find_layer(inner, self.layer)
        self._checked = inner
        if example is None:
            return
        seen = []
        handle = layer.register_forward_hook(lambda module, inputs, output: seen.append(output))
        modes = [(m, m.training) for m in inner.modules()]
        p = next(inner.parameters(), None)
        try:
            inner.eval()
            with torch.no_grad():
                inner(example.to(p.device) if p is not None else example)
        finally:
            handle.remove()
            for m, training in modes:
                m.training = training
        name = type(inner).__name__
        if not seen:
            raise ValueError(f"TenetObjective: layer {self.layer!r} is not called by {name}'s "
                             "forward, so there is nothing to inhibit")
        out = seen[0]
        if not isinstance(out, Tensor) or out.ndim != 4:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"TenetObjective: layer {self.layer!r} of {name} outputs {got}; "
                             "TENET inhibits a (B, C, H, W) feature map")
        if out.shape[1] < self.num_groups:
            raise ValueError(f"TenetObjective: layer {self.layer!r} of {name} has "
                             f"{out.shape[1]} channels, fewer than num_groups = "
                             f"{self.num_groups}")

    def _attach(self, model) -> GroupInhibition:
        inner = unwrap_model(model)
        if self._inhibition is None or self._inhibition.model is not inner:
            if self._inhibition is not None:
                self._inhibition.remove()
            self._inhibition = GroupInhibition(inner, self.layer, self.num_groups,
                                               max_iter=self.max_iter,
                                               shift_threshold=self.shift_threshold,
                                               seed=self.seed)
        return self._inhibition

    def _record(self, module, inputs, output) -> None:
        if inputs and isinstance(inputs[0], Tensor) and isinstance(output, Tensor):
            self._last = (inputs[0].detach(), output.detach())

    def compute(self, model, x, y, *, replay=0):
        if self._checked is not unwrap_model(model):  # the first step: fail now, not at t=500
            self.check_model(model)
        if replay == 0:
            self._plan = self.replays
        self._replay = replay
        inhibiting = self._plan > self.base.replays
        if inhibiting and replay % 2 == 1:
            return self._tenet_step(model, y)
        base_replay = replay // 2 if inhibiting else replay
        watch = None
        if inhibiting:  # remember the base step's last forward: its inputs and predictions
            self._last = None
            watch = unwrap_model(model).register_forward_hook(self._record)
        try:
            loss, metrics = self.base.compute(model, x, y, replay=base_replay)
        finally:
            if watch is not None:
                watch.remove()
        self._base_metrics = dict(metrics)
        return loss, {**metrics, **self._zero_metrics(loss)}

    @staticmethod
    def _zero_metrics(like: Tensor) -> dict:
        zero = torch.zeros((), device=like.device)
        return {"tenet_loss": zero, "orth_loss": zero, "tenet_fraction": zero}

    def _tenet_step(self, model, y: Tensor):
        inhibition = self._attach(model)
        if self._last is None:
            raise RuntimeError("TenetObjective: the base objective made no model call to "
                               "inhibit after")
        x_seen, logits = self._last
        self._last = None
        keep = logits.argmax(1) == y
        # One host read per TENET step (the batch size of the re-forward depends on it).
        n = int(keep.sum())
        metrics = dict(self._base_metrics)
        if n == 0:
            if rank_world()[1] > 1:  # DDP: every rank must all-reduce gradients
                loss = 0.0 * model(x_seen[:1]).float().sum()
            else:
                loss = torch.zeros((), device=y.device, requires_grad=True)  # no gradient
            return loss, {**metrics, **self._zero_metrics(loss)}
        xs, ys = x_seen[keep], y[keep]
        out = inhibition.step(xs, ys, forward=model, index=self.drawn)
        self.drawn += n
        ce = F.cross_entropy(out.logits.float(), ys)
        loss = self.tenet_weight * ce + self.orth_weight * out.orth_loss.float()
        metrics.update(tenet_loss=loss.detach(), orth_loss=out.orth_loss.detach(),
                       tenet_fraction=torch.tensor(n / y.shape[0], device=y.device))
        return loss, metrics

    def after_backward(self) -> None:
        inhibiting = self._plan > self.base.replays
        if not (inhibiting and self._replay % 2 == 1):
            self.base.after_backward()
        if self._replay == self._plan - 1:
            self.iteration += 1

    def state_dict(self) -> dict:
        return {"iteration": self.iteration, "drawn": self.drawn,
                "base": self.base.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.iteration = int(state.get("iteration", 0))
        self.drawn = int(state.get("drawn", 0))
        self.base.load_state_dict(state.get("base", {}))

    def config(self) -> dict:
        out = {k: v for k, v in super().config().items()
               if not k.startswith("_") and k not in ("iteration", "drawn")}
        out["base"] = self.base.name
        return out

    def close(self) -> None:
        """Take the inhibition hook off the model."""
        if self._inhibition is not None:
            self._inhibition.remove()
            self._inhibition = None


class TenetFreeAT(TenetObjective):
    """TENET on free adversarial training (TenetObjective.free_at with these defaults)."""

    name = "tenet_free_at"

    def __init__(self, layer: str = "stage2", *, eps: float = 4 / 255, replays: int = 4,
                 every: int = 1, **kw):
        if "base" in kw:
            raise TypeError("TenetFreeAT: the base objective is FreeAT (use TenetObjective "
                            "for another)")
        super().__init__(layer, base=FreeAT(eps=eps, replays=replays), every=every, **kw)
