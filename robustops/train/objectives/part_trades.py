"""Part-model TRADES: (1 - c) CE(x) + c Seg(x_adv) + beta KL(p(x) || p(x_adv))."""
from __future__ import annotations

import torch.nn.functional as F

from ...arguments import non_negative
from ...data.part_targets import unpack_part_targets
from .base import Objective, accuracy
from .part_loss import SEG_WEIGHT, forward_with_parts, segmentation_loss
from .part_semi import check_seg_weight, mask_metrics
from .trades import trades_adversarial


class PartTRADES(Objective):
    """TRADES for part models (METHODS.md section 1; beta 6, c 0.5).

    The inner maximisation ascends TRADES' KL between the clean and adversarial class
    probabilities (a classification loss; the segmentation plays no part in it) with
    the model in eval mode, from x + 0.001 N(0, 1): L-inf eps 8/255, 10 steps of
    1.25 * eps / 10 by default. Images without a mask contribute no Seg term.
    y: packed part targets (pack_part_targets) or labels (B,).
    """

    name = "part_trades"

    def __init__(self, beta: float = 6.0, seg_weight: float = SEG_WEIGHT,
                 eps: float = 8 / 255, alpha=None, steps: int = 10, norm: str = "linf",
                 seed: int = 0):
        self.beta = non_negative(beta, "beta")
        self.seg_weight = check_seg_weight(seg_weight)
        self.eps, self.steps, self.norm, self.seed = eps, steps, norm, seed
        self.alpha = 1.25 * eps / steps if alpha is None else alpha
        self._calls = 0

    def compute(self, model, x, y, *, replay=0):
        labels, masks = unpack_part_targets(y, x.shape[-2:])
        self._calls += 1
        x_adv = trades_adversarial(model, x, labels, eps=self.eps, alpha=self.alpha,
                                   steps=self.steps, norm=self.norm,
                                   seed=self.seed * 1_000_003 + self._calls)
        logits, _ = forward_with_parts(model, x)
        logits_adv, parts_adv = forward_with_parts(model, x_adv)
        c = self.seg_weight
        per = (1 - c) * F.cross_entropy(logits.float(), labels, reduction="none")
        if masks is not None and c > 0:
            per = per + c * segmentation_loss(parts_adv, masks)
        kl = F.kl_div(F.log_softmax(logits_adv.float(), 1), F.log_softmax(logits.float(), 1),
                      reduction="batchmean", log_target=True)
        return per.mean() + self.beta * kl, {"acc": accuracy(logits, labels),
                                             "adv_acc": accuracy(logits_adv, labels),
                                             "kl": kl.detach(), **mask_metrics(masks)}

    def state_dict(self):
        return {"calls": self._calls}

    def load_state_dict(self, state):
        self._calls = int(state.get("calls", 0))
