"""TENET inhibition-step benchmark: robustops' channel_kmeans + group_inhibition_mask vs the
paper's per-sample numpy procedure (robustops.bench.tenet_reference), side by side in one
process, from the same initial medoids (METHODS.md section 2; issue 6: >= 20x at
B=64, C=512, 16 x 16).

Inputs: a synthetic stage-2-like feature map, ReLU'd channels scattered around 12
prototype maps per sample (so the groups are real clusters, as in a trained network's
features), and a small gradient of both signs. Both sides start from kmeans_init's
medoids (the robustops side draws them itself, from the seed); the report checks that
the two produce the same assignment and mask before timing them.
"""
from __future__ import annotations

from typing import List, Tuple

import numpy as np
import torch

from ..ops.channel_kmeans import channel_kmeans, kmeans_init
from ..ops.group_inhibition_mask import group_inhibition_mask
from . import tenet_reference
from .timing import format_table, interleaved_medians, keep_freed_memory

# (batch, channels, size): the acceptance case (ResNeXt-29 stage 2 on CIFAR).
CASE = (64, 512, 16)
QUICK_CASE = (16, 512, 16)
NUM_GROUPS = 6
SEED = 0


def make_inputs(batch: int = 64, channels: int = 512, size: int = 16, seed: int = 0,
                prototypes: int = 12, noise: float = 0.7) -> Tuple[torch.Tensor, torch.Tensor]:
    """(F, G), float32 (B, C, size, size): clustered ReLU features and a gradient."""
    g = torch.Generator().manual_seed(seed)
    n = size * size
    protos = torch.randn(batch, prototypes, n, generator=g)
    labels = torch.randint(0, prototypes, (batch, channels), generator=g)
    x = protos[torch.arange(batch)[:, None], labels] + noise * torch.randn(
        batch, channels, n, generator=g)
    f = torch.relu(x).reshape(batch, channels, size, size).contiguous()
    grad = 1e-3 * torch.randn(batch, channels, size, size, generator=g)
    return f, grad


def robustops_step(f: torch.Tensor, g: torch.Tensor, num_groups: int = NUM_GROUPS,
                   seed: int = SEED) -> Tuple[torch.Tensor, torch.Tensor]:
    """The batched inhibition step: (mask (B, C, H, W), assignment (B, C))."""
    groups = channel_kmeans(f, num_groups, seed=seed)
    return group_inhibition_mask(f, g, groups.assignment, num_groups), groups.assignment


def cases(batch: int, channels: int, size: int):
    """The timed callables (robustops and the numpy reference, whole step and parts)."""
    f, g = make_inputs(batch, channels, size)
    init = kmeans_init(batch, channels, NUM_GROUPS, seed=SEED).numpy()
    fn, gn = f.numpy(), g.numpy()
    assignment = channel_kmeans(f, NUM_GROUPS, seed=SEED).assignment
    an = assignment.numpy()
    return {
        "step robustops": lambda: robustops_step(f, g),
        "step reference": lambda: tenet_reference.inhibition_step(fn, gn, init),
        "kmeans robustops": lambda: channel_kmeans(f, NUM_GROUPS, seed=SEED),
        "kmeans reference": lambda: tenet_reference.kmeans_batch(fn, init),
        "mask robustops": lambda: group_inhibition_mask(f, g, assignment, NUM_GROUPS),
        "mask reference": lambda: tenet_reference.inhibition_mask(fn, gn, an, NUM_GROUPS),
    }, (f, g, init)


def agreement(f: torch.Tensor, g: torch.Tensor, init: np.ndarray) -> dict:
    """How closely the two steps agree from the same initial medoids."""
    mask, assignment = robustops_step(f, g)
    ref_mask, ref_assignment = tenet_reference.inhibition_step(f.numpy(), g.numpy(), init)
    same = assignment.numpy() == ref_assignment
    rows = same.all(axis=1)
    diff = np.abs(mask.numpy()[rows] - ref_mask[rows]).max() if rows.any() else float("nan")
    return {"assignment_equal": float(same.mean()), "mask_max_abs_diff_same_groups": float(diff)}


def report(quick: bool = False, repeats: int | None = None) -> Tuple[str, List[dict]]:
    """Rows for `robustops bench --only tenet`: robustops vs the per-sample numpy reference."""
    keep_freed_memory()  # both sides at their best: no page re-faulting between calls
    batch, channels, size = QUICK_CASE if quick else CASE
    repeats = repeats or (3 if quick else 5)
    fns, (f, g, init) = cases(batch, channels, size)
    check = agreement(f, g, init)
    t = interleaved_medians(fns, repeats=repeats, inner=1, warmup=1)
    shape = f"{batch}x{channels}x{size}x{size}, K={NUM_GROUPS}"
    rows, recs = [], []
    for part, label in (("step", "inhibition step (k-means + mask)"), ("kmeans", "channel k-means"),
                        ("mask", "inhibition mask")):
        ours, ref = t[f"{part} robustops"], t[f"{part} reference"]
        rows.append([f"TENET {label} {shape}", f"{ours * 1e3:.1f}", f"{ref * 1e3:.1f}",
                     f"{ref / ours:.1f}x"])
        recs.append({"case": f"tenet {part} {batch}x{channels}x{size}x{size}",
                     "robustops_s": ours, "baseline_s": ref, "speedup": ref / ours,
                     "threads": torch.get_num_threads(), **check})
    table = format_table(["case (vs per-sample numpy reference)", "robustops ms", "reference ms",
                          "speedup"], rows)
    table += (f"\n(same initial medoids: {check['assignment_equal']:.2%} of the channels get the "
              f"same group; {torch.get_num_threads()} torch threads, the reference is numpy)")
    return table, recs
