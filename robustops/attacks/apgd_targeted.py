"""APGD-T (Croce & Hein, 2020): APGD on the targeted DLR loss, one run per target class.

Restart r attacks the (r // restarts + 2)-th most likely class of the clean input (the
reference's target_class = 2, ..., n_target_classes + 1), so Attack.robust_mask's early
exit and batched restarts apply across target classes exactly as across restarts: a
sample fooled while attacking one target is not attacked with the next ones.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ..arguments import positive_int
from .apgd import APGD
from .base import Eps, State
from .row_keys import RowKeys


class APGDTargeted(RowKeys, APGD):
    """APGD-T: targeted DLR loss, the top `n_target_classes` other classes in turn.

    Defaults are AutoAttack's (standard version): 100 steps, 9 target classes, 1 restart
    per target. A sample counts as fooled when it is misclassified (any class), as in the
    reference. Needs a model with at least 4 classes (the targeted DLR loss uses the 4
    largest logits) and more than n_target_classes. See APGD / Attack for the rest.
    """

    def __init__(self, model, *, eps: Eps = 8 / 255, steps: int = 100, n_target_classes: int = 9,
                 restarts: int = 1, **kwargs):
        if "loss" in kwargs:
            raise ValueError("APGDTargeted uses the targeted DLR loss; do not pass loss")
        self.n_target_classes = positive_int(n_target_classes, "n_target_classes")
        self.restarts_per_target = positive_int(restarts, "restarts")
        super().__init__(model, eps=eps, steps=steps, loss="dlr",
                         restarts=self.n_target_classes * self.restarts_per_target, **kwargs)

    def _start(self, x0: Tensor, x_nat: Tensor, y: Tensor, target: Optional[Tensor],
               eps: Eps, ids: Optional[Tensor]) -> State:
        _, restart = self._row_keys(x0.shape[0], x0.device)
        if target is None:
            target = target_by_rank(self.model, x_nat, restart // self.restarts_per_target + 2,
                                    self.n_target_classes, min_classes=4)
        return super()._start(x0, x_nat, y, target, eps, ids)


def target_by_rank(model, x_nat: Tensor, rank: Tensor, n_target_classes: int,
                   min_classes: int = 2) -> Tensor:
    """(B,) the class ranked `rank` (2 = runner-up) by model(x_nat); rank: (B,) int64.
    min_classes: the fewest classes the attack's loss works with."""
    with torch.no_grad():
        logits = model(x_nat)
    k = logits.shape[1]
    if n_target_classes > k - 1:
        raise ValueError(f"n_target_classes={n_target_classes} but the model has {k} classes: "
                         f"at most {k - 1} other classes can be targets")
    if k < min_classes:
        raise ValueError(f"this attack's loss needs at least {min_classes} classes, the model "
                         f"has {k}")
    order = logits.float().argsort(dim=1, descending=True)
    return order.gather(1, (rank - 1)[:, None].to(order.device))[:, 0]
