"""Part-model MAT: (1 - c)[(1 - beta) CE(x) + beta CE(x_adv)] + c Seg(x_adv)."""
from __future__ import annotations

import torch.nn.functional as F

from ...arguments import require_real
from ...data.part_targets import unpack_part_targets
from .base import accuracy
from .part_loss import SEG_WEIGHT, forward_with_parts, segmentation_loss
from .part_semi import check_seg_weight, mask_metrics
from .pgd_at import PGDAT


class PartMAT(PGDAT):
    """MAT for part models (METHODS.md section 1).

    The attack is PGDAT's: PGD on the classification CE with the model in eval mode
    (default L-inf eps 8/255, 10 steps of 1.25 * eps / 10, one random start). beta in
    [0, 1] weighs the adversarial CE; seg_weight is c. Images without a mask contribute
    no Seg term. y: packed part targets (pack_part_targets) or labels (B,).
    """

    name = "part_mat"

    def __init__(self, beta: float = 0.5, seg_weight: float = SEG_WEIGHT,
                 eps: float = 8 / 255, alpha=None, steps: int = 10, **pgd_kwargs):
        beta = require_real(beta, "beta", low=0, high=1, what="in [0, 1]")
        super().__init__(eps=eps, alpha=1.25 * eps / steps if alpha is None else alpha,
                         steps=steps, **pgd_kwargs)
        self.beta = beta
        self.seg_weight = check_seg_weight(seg_weight)

    def compute(self, model, x, y, *, replay=0):
        labels, masks = unpack_part_targets(y, x.shape[-2:])
        x_adv = self.adversarial(model, x, labels)
        logits, _ = forward_with_parts(model, x)
        logits_adv, parts_adv = forward_with_parts(model, x_adv)
        c, b = self.seg_weight, self.beta
        per = (1 - c) * ((1 - b) * F.cross_entropy(logits.float(), labels, reduction="none")
                         + b * F.cross_entropy(logits_adv.float(), labels, reduction="none"))
        if masks is not None and c > 0:
            per = per + c * segmentation_loss(parts_adv, masks)
        return per.mean(), {"acc": accuracy(logits, labels),
                            "adv_acc": accuracy(logits_adv, labels), **mask_metrics(masks)}
