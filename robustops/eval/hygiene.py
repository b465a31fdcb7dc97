"""Checks that catch evaluations a robust-accuracy number would silently lie about.

Each check looks at one batch: a model left in train mode, a model that returns
probabilities instead of logits, zero input gradients (masked or non-
differentiable), outputs that differ for the same input (stochastic: use EOT),
and inputs outside the image box or not finite.
"""
from __future__ import annotations

import warnings
from typing import List, Sequence

import torch
from torch import Tensor, nn

from ..arguments import check_labels
from ..image_box import bounds_like, check_bounds, describe_box

ACTIONS = ("raise", "warn", "off")


class EvaluationHygieneError(RuntimeError):
    """The evaluation setup would make robust accuracy meaningless."""


def _same_outputs(a: Tensor, b: Tensor) -> bool:
    """a == b elementwise, NaN equal to NaN: NaN inputs (reported on their own) give NaN
    outputs, which torch.equal would call different, so a deterministic model stochastic."""
    return a.shape == b.shape and bool(((a == b) | (a.isnan() & b.isnan())).all())


def find_problems(model: nn.Module, x: Tensor, y: Tensor, *, lo, hi,
                  uses_eot: bool) -> List[str]:
    """Human-readable problems of evaluating `model` on the batch (x, y); empty if none."""
    problems = []
    # lo, hi: numbers, or an attack's per-channel values (robustops.image_box).
    lo, hi = check_bounds(lo, hi, "find_problems", strict=False)
    box = bounds_like(lo, hi, x)
    finite = bool(torch.isfinite(x).all())
    if not finite:
        nan, inf = int(torch.isnan(x).sum()), int(torch.isinf(x).sum())
        what = " and ".join(w for w in (f"{nan} NaN" if nan else "", f"{inf} Inf" if inf else "")
                            if w)
        problems.append(f"inputs contain {what} (of {x.numel()} values); check the data "
                        "pipeline")
    elif not bool(((x >= box[0]) & (x <= box[1])).all()):
        problems.append(f"inputs span [{x.min().item():.4g}, {x.max().item():.4g}] but the attacks "
                        f"assume {describe_box(lo, hi)}; normalise inside the model, not in the "
                        "data")
    training = [name or "<model>" for name, m in model.named_modules() if m.training]
    if training:
        problems.append(f"model is in train mode ({', '.join(training[:3])}"
                        f"{', ...' if len(training) > 3 else ''}); call model.eval() first")
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        with torch.enable_grad():
            xr = x.detach().clone().requires_grad_(True)
            out = model(xr)
            if out.ndim != 2 or out.shape[0] != x.shape[0]:
                problems.append(f"model output has shape {tuple(out.shape)}; expected logits (B, K)")
                return problems
            check_labels(out, y)  # -100 and the like: an error, whatever `checks` says
            rows = out.detach().float()
            # Compared on the output's device (a CPU constant fails against a CUDA model's).
            if (rows >= 0).all() and (rows <= 1).all() and bool(
                    ((rows.sum(1) - 1).abs() <= 1e-3).all()):
                problems.append("model returns probabilities (rows in [0, 1] summing to 1); attacks "
                                "need logits: remove the final softmax")
            # A margin of logits, not cross-entropy: CE saturates to exactly zero
            # gradient on confidently classified batches, which is not masking.
            z = out.float()
            other = z.masked_fill(nn.functional.one_hot(y, z.shape[1]).bool(), float("-inf"))
            loss = (other.amax(1) - z.gather(1, y[:, None])[:, 0]).sum()
            (g,) = torch.autograd.grad(loss, xr, allow_unused=True)
        if g is None or not torch.any(g != 0):
            problems.append("the input gradient is zero everywhere (non-differentiable or masked "
                            "gradients): gradient attacks cannot measure robustness here")
        with torch.no_grad():
            again = model(x.detach())
        if not uses_eot and not _same_outputs(again, out.detach()):
            problems.append("model gives different outputs for the same input (stochastic); "
                            "attack it with EOT (eot_samples > 1)")
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)
    return problems


def gradient_masking_problems(robust_after) -> List[str]:
    """AutoAttack's check on the robust accuracy after each attack of a sequential suite
    ({name: fraction}, run order): Square (black-box) breaking samples the white-box
    attacks did not means masked gradients (robustops.attacks.autoattack)."""
    from ..attacks.autoattack import gradient_masking_check

    return gradient_masking_check(robust_after)


def enforce(problems: Sequence[str], action: str) -> None:
    """Raise or warn about `problems` as `action` ('raise' | 'warn' | 'off') says."""
    if action not in ACTIONS:
        raise ValueError(f"checks must be one of {', '.join(ACTIONS)}, got {action!r}")
    if not problems or action == "off":
        return
    msg = "robust-accuracy evaluation: " + "; ".join(problems) + \
        " (pass checks='warn' or checks='off' to proceed anyway)"
    if action == "raise":
        raise EvaluationHygieneError(msg)
    warnings.warn(msg, RuntimeWarning, stacklevel=3)
