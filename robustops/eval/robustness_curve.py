"""Robust accuracy against eps: one attack run per batch for all eps values at once.

Each attack's `robust_mask_multi_eps` attacks the clean-correct samples of a batch at every
eps in one replicated batch; a sample counts as robust at eps when it is classified
correctly clean and no iterate of any restart fooled the model (as in robust_accuracy).
With several attacks the worst case (robust against all) is kept too.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from ..arguments import check_labels
from ..attacks.base import Attack, check_eps
from .dataset_batches import Data
from .robust_accuracy import _named, checked_batches, evaluation_setup

WORST_CASE = "worst case"


@dataclasses.dataclass
class RobustnessCurve:
    """Accuracy in [0, 1] over `n` samples at each eps (eps[0] may be 0), per attack (and
    WORST_CASE with several attacks); `clean` is the accuracy without attack."""

    n: int
    eps: List[float]
    accuracy: Dict[str, List[float]]
    clean: float
    norm: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def rows(self) -> List[list]:
        """[eps, accuracy % per curve..., n] per eps: the report's table rows."""
        return [[f"{e:g}", *(f"{100 * acc[i]:.1f}%" for acc in self.accuracy.values()), self.n]
                for i, e in enumerate(self.eps)]


def robustness_curve(model: nn.Module, data: Data,
                     attacks: Union[Attack, Sequence[Attack], Mapping[str, Attack]],
                     eps_values: Sequence[float], *, batch_size: int = 256,
                     device: Optional[torch.device] = None, max_samples: Optional[int] = None,
                     checks: str = "raise", distributed: bool = False,
                     early_exit: bool = True) -> RobustnessCurve:
    """Accuracy of `model` on `data` under each attack at every eps in `eps_values`.

    data, batch_size, max_samples, checks, distributed, early_exit: as robust_accuracy
    (the hygiene checks run on the first batch). eps_values: finite floats >= 0, in
    increasing order (the curve's x axis). The attacks' own eps is not used; they must take
    a per-sample eps (PGD, FGSM, APGD; not the AutoAttack suite, whose attacks are built
    around one eps). Host syncs: one per batch and attack (the clean-correct samples) plus
    the attacks' early-exit checks; the counts are read once at the end.
    """
    named = _named({"attack": attacks} if isinstance(attacks, Attack) else attacks)
    for name, atk in named.items():
        if type(atk).robust_mask_multi_eps is not Attack.robust_mask_multi_eps or \
                type(atk).robust_mask is not Attack.robust_mask:
            raise TypeError(f"attack {name!r} ({type(atk).__name__}) runs its own suite, which "
                            "does not take a per-sample eps; draw the curve with PGD or APGD")
    eps = [check_eps(e, "eps_values entry") for e in eps_values]
    if not eps:
        raise ValueError("eps_values is empty: give the eps values of the curve")
    if any(b <= a for a, b in zip(eps, eps[1:])):
        raise ValueError(f"eps_values must increase, got {eps}")
    rank, world, device, first, uses_eot = evaluation_setup(model, named, distributed, device)
    curves = list(named) + ([WORST_CASE] if len(named) > 1 else [])
    # Device counts: [clean, n] and (curve, eps) robust samples, read once at the end.
    totals = torch.zeros(2, dtype=torch.int64, device=device)
    robust_counts = torch.zeros(len(curves), len(eps), dtype=torch.int64, device=device)
    for offset, x, y in checked_batches(model, data, batch_size, max_samples, rank, world,
                                        device, first, uses_eot, checks, "robustness_curve"):
        with torch.no_grad():
            logits = model(x)
        check_labels(logits, y)
        correct = logits.argmax(1) == y
        totals += torch.stack([correct.sum(), torch.tensor(x.shape[0], device=device)])
        ids = correct.nonzero()[:, 0]
        if ids.numel() == 0:
            continue
        index = torch.arange(offset, offset + x.shape[0], device=device)[ids]
        masks = [atk.robust_mask_multi_eps(x[ids], y[ids], eps, index=index,
                                           early_exit=early_exit) for atk in named.values()]
        if len(masks) > 1:
            masks.append(torch.stack(masks).all(0))
        robust_counts += torch.stack([m.sum(1) for m in masks])
    if world > 1:
        from ..distributed import all_reduce

        totals, robust_counts = all_reduce(totals), all_reduce(robust_counts)
    (clean, n), counts = totals.tolist(), robust_counts.tolist()
    if n == 0:
        raise ValueError("data yielded no samples")
    return RobustnessCurve(n=n, eps=eps, accuracy={c: [k / n for k in row]
                                                   for c, row in zip(curves, counts)},
                           clean=clean / n, norm=first.norm)


# Multiples of the evaluation's eps the curve is drawn at when no eps values are given:
# the clean point, a fine grid below eps, and twice eps (where a sound defence nears zero).
DEFAULT_EPS_MULTIPLES = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)


def default_curve_eps(eps: float) -> List[float]:
    """The curve's eps values around an evaluation's eps (DEFAULT_EPS_MULTIPLES times it)."""
    eps = check_eps(eps)
    if eps == 0:
        raise ValueError("eps is 0: give the curve's eps values explicitly")
    return [m * eps for m in DEFAULT_EPS_MULTIPLES]
