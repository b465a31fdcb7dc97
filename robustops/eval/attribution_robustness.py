"""Attribution robustness over a dataset: top-k intersection, Kendall tau and Spearman rho
between S(x) and S(x~) on correctly classified images, with natural and PGD accuracy.

METHODS.md section 5: S = |sum_c IG_c| (zero baseline) normalised to sum to H*W; x~
from an attribution attack (TopKAttributionAttack, or the RandomSignPerturbation
baseline); k of the metric may differ from the attack's k (MNIST: 200 attack / 100
eval). The rank metrics run batched on the tensors' device
(robustops.ops.rank_metrics), not per image.
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Dict, List, Optional

import torch
from torch import Tensor, nn

from ..arguments import positive_int
from ..attacks.attribution_base import AttributionAttack
from ..attacks.base import Attack
from ..attacks.model_state import attack_state
from ..ops.rank_metrics import rank_metrics
from .dataset_batches import Data, iterate_batches

__all__ = ["AttributionRobustness", "attribution_robustness"]


@dataclasses.dataclass
class AttributionRobustness:
    """n samples; natural / PGD accuracy in [0, 1] (PGD None without a PGD attack);
    n_attacked: correctly classified samples the metrics average over; topk_intersection,
    kendall, spearman: their means (NaN correlations of constant maps are skipped);
    label_kept: fraction of attacked samples whose label the perturbation kept;
    seconds per phase."""

    n: int
    natural_accuracy: float
    pgd_accuracy: Optional[float]
    n_attacked: int
    topk_intersection: float
    kendall: float
    spearman: float
    label_kept: float
    k: int
    seconds: Dict[str, float]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def table(self) -> str:
        pgd = "n/a" if self.pgd_accuracy is None else f"{100 * self.pgd_accuracy:.2f}%"
        return "\n".join([
            f"samples {self.n}, attacked (correct) {self.n_attacked}, k = {self.k}",
            f"natural accuracy      {100 * self.natural_accuracy:.2f}%",
            f"PGD accuracy          {pgd}",
            f"top-k intersection    {100 * self.topk_intersection:.2f}%",
            f"Kendall tau           {self.kendall:.4f}",
            f"Spearman rho          {self.spearman:.4f}",
            f"label kept            {100 * self.label_kept:.2f}%"])


def _nanmean(chunks: List[Tensor]) -> float:
    if not chunks:
        return math.nan
    v = torch.cat(chunks)
    v = v[~torch.isnan(v)]
    return float(v.mean()) if v.numel() else math.nan


def attribution_robustness(model: nn.Module, data: Data, attack: AttributionAttack, *,
                           k: int = 100, pgd: Optional[Attack] = None, batch_size: int = 64,
                           max_samples: Optional[int] = None, image_key: Optional[str] = None,
                           label_key: Optional[str] = None) -> AttributionRobustness:
    """Evaluate `model` on `data` ((x, y) tensors, a Dataset or an iterable of batches, x in
    [0, 1]; dict samples or batches are read at image_key / label_key).

    attack: an AttributionAttack on the same model; k: top-k of the metric; pgd: an
    optional robustops Attack for the PGD accuracy (a sample counts as robust when no
    iterate of any restart fools the model); samples are keyed by their position in
    the data (global index) for every random draw.
    """
    if not isinstance(attack, AttributionAttack):
        raise TypeError(f"attack must be an AttributionAttack, got {type(attack).__name__}")
    if attack.model is not model:
        raise ValueError("attack.model must be the evaluated model")
    k = positive_int(k, "k")
    n = correct = robust = 0
    topk: List[Tensor] = []
    tau: List[Tensor] = []
    rho: List[Tensor] = []
    kept: List[Tensor] = []
    seconds = {"clean": 0.0, "pgd": 0.0, "attack": 0.0, "metrics": 0.0}
    for x, y in iterate_batches(data, batch_size, max_samples, image_key=image_key,
                                label_key=label_key):
        b = x.shape[0]
        idx = torch.arange(n, n + b, device=x.device)
        t0 = time.perf_counter()
        with attack_state(model, "eval"), torch.no_grad():
            ok = model(x).argmax(1) == y
        t1 = time.perf_counter()
        seconds["clean"] += t1 - t0
        if pgd is not None:
            robust += int(pgd.robust_mask(x, y, index=idx).sum())
            seconds["pgd"] += time.perf_counter() - t1
        n += b
        correct += int(ok.sum())
        if not bool(ok.any()):
            continue
        t2 = time.perf_counter()
        res = attack.attack(x[ok], y[ok], index=idx[ok])
        t3 = time.perf_counter()
        if res.map_nat.shape[1] < k:
            raise ValueError(f"k = {k} exceeds the {res.map_nat.shape[1]} pixels of the maps")
        met = rank_metrics(res.map_nat, res.map_adv, k)
        topk.append(met["topk"].cpu())
        tau.append(met["kendall"].cpu())
        rho.append(met["spearman"].cpu())
        kept.append(res.label_kept.float().cpu())
        seconds["attack"] += t3 - t2
        seconds["metrics"] += time.perf_counter() - t3
    if n == 0:
        raise ValueError("no samples to evaluate")
    return AttributionRobustness(
        n=n, natural_accuracy=correct / n, pgd_accuracy=None if pgd is None else robust / n,
        n_attacked=correct, topk_intersection=_nanmean(topk), kendall=_nanmean(tau),
        spearman=_nanmean(rho), label_kept=_nanmean(kept), k=k, seconds=seconds)
