"""Network-dissection-style unit labelling (Bau et al., 2017) against concept masks.

For each unit (channel) of a layer: threshold its activations at their top
(1 - quantile) level over the dataset, upsample the map to image size, and
score the binary map against each concept mask by IoU over the whole dataset.
A unit takes the label of its best concept when that IoU exceeds the threshold
(0.04). Concept masks come from the embedded datasets (shape silhouettes,
texture regions, parts). Tallies are batched matrix products, not loops.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclasses.dataclass
class Dissection:
    """Per unit: best concept (None below the threshold) and IoU; counts per concept."""

    layer: str
    concepts: List[str]
    iou: Tensor                      # (units, concepts)
    labels: List[Optional[str]]      # per unit
    thresholds: Tensor               # (units,) activation thresholds

    def counts(self) -> Dict[str, int]:
        """Number of units labelled with each concept."""
        out = {c: 0 for c in self.concepts}
        for lab in self.labels:
            if lab is not None:
                out[lab] += 1
        return out

    def units_for(self, concept: str) -> List[int]:
        return [i for i, lab in enumerate(self.labels) if lab == concept]


def _activations(model: nn.Module, layer: str, images: Tensor, batch_size: int):
    modules = dict(model.named_modules())
    if layer not in modules:
        raise ValueError(f"no layer named {layer!r} in the model")
    store = {}
    h = modules[layer].register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    device = next(iter(model.parameters())).device
    try:
        for i in range(0, images.shape[0], batch_size):
            model(images[i:i + batch_size].to(device))
            a = store["a"]
            if a.ndim != 4:
                raise ValueError(f"layer {layer!r} outputs {tuple(a.shape)}, not (B, C, H, W) maps")
            yield i, a.float()
    finally:
        h.remove()


@torch.no_grad()
def dissect(model: nn.Module, layer: str, images: Tensor, concept_masks: Dict[str, Tensor], *,
            quantile: float = 0.995, iou_threshold: float = 0.04,
            batch_size: int = 128) -> Dissection:
    """Label each unit of `layer` with the concept its top activations overlap best.

    images: (N, C, H, W) in [0, 1]; concept_masks: {name: (N, H, W) bool} at image size.
    """
    if not concept_masks:
        raise ValueError("concept_masks is empty")
    n, _, hgt, wid = images.shape
    for name, m in concept_masks.items():
        if tuple(m.shape) != (n, hgt, wid):
            raise ValueError(f"mask {name!r} has shape {tuple(m.shape)}, expected {(n, hgt, wid)}")
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    was_training = model.training
    model.eval()
    try:
        # Pass 1: per-unit thresholds from all activations of the dataset.
        acts = torch.cat([a.transpose(0, 1).reshape(a.shape[1], -1).cpu()
                          for _, a in _activations(model, layer, images, batch_size)], 1)
        thresholds = torch.quantile(acts, quantile, dim=1) if acts.shape[1] <= 16_000_000 else \
            acts.kthvalue(int(quantile * acts.shape[1]), dim=1).values
        del acts
        names = list(concept_masks)
        masks = torch.stack([concept_masks[c].cpu() for c in names], 1)  # (N, K, H, W), tallied on CPU
        inter = torch.zeros(len(thresholds), len(names), dtype=torch.float64)
        unit_area = torch.zeros(len(thresholds), dtype=torch.float64)
        concept_area = masks.flatten(2).sum(2).sum(0).double()
        # Pass 2: IoU tallies; the upsampled unit maps and concept masks meet in one matmul.
        for i, a in _activations(model, layer, images, batch_size):
            up = F.interpolate(a, size=(hgt, wid), mode="bilinear", align_corners=False).cpu()
            on = (up > thresholds.view(1, -1, 1, 1)).float()              # (B, U, H, W)
            lab = masks[i:i + a.shape[0]].float()                          # (B, K, H, W)
            inter += torch.einsum("buhw,bkhw->uk", on, lab).double()
            unit_area += on.sum((0, 2, 3)).double()
    finally:
        model.train(was_training)
    union = unit_area[:, None] + concept_area[None, :] - inter
    iou = (inter / union.clamp_min(1)).float()
    best, arg = iou.max(1)
    labels = [names[int(a)] if float(b) > iou_threshold else None for a, b in zip(arg, best)]
    return Dissection(layer=layer, concepts=names, iou=iou, labels=labels, thresholds=thresholds)
