"""Corruption-suite benchmark: the batched robustops corruptions vs imagecorruptions.

Both sides corrupt the same 256 images of 32x32 with every corruption at every
severity, in one process. imagecorruptions works one uint8 image at a time.
"""
from __future__ import annotations

import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..eval.corruptions import CORRUPTIONS, SEVERITIES, corrupt
from .timing import format_table


def smooth_images(n: int = 256, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Natural-looking test images: smoothed noise in [0, 1], (n, 3, size, size)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size // 4, size // 4, generator=g)
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)
    return (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1)


def time_robustops(x: torch.Tensor, names: Sequence[str]) -> Dict[str, float]:
    """Seconds per corruption name for all 5 severities on the batch x (after a warm-up)."""
    for name in names:  # first calls import and set up lazily (custom-op dispatch, assets)
        corrupt(x[:1], name, 1, seed=0)
    out = {}
    for name in names:
        t0 = time.perf_counter()
        for s in SEVERITIES:
            corrupt(x, name, s, seed=0)
        out[name] = time.perf_counter() - t0
    return out


def time_imagecorruptions(x: torch.Tensor, names: Sequence[str], max_images: Optional[int] = None
                          ) -> Optional[Dict[str, float]]:
    """Seconds per corruption for all severities over the images (one at a time), or None
    when imagecorruptions is not installed. max_images: time that many and scale up."""
    from .imagecorruptions_peer import corrupt_uint8, load

    ic = load()
    if ic is None:
        return None
    imgs = (x.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    n = len(imgs) if max_images is None else min(max_images, len(imgs))
    out = {}
    for name in names:
        t0 = time.perf_counter()
        for s in SEVERITIES:
            for i in range(n):
                corrupt_uint8(ic, imgs[i], name, s, seed=i)
        out[name] = (time.perf_counter() - t0) * len(imgs) / n
    return out


def report(quick: bool = False) -> Tuple[str, List[dict]]:
    """Rows for `robustops bench`: per corruption and in total."""
    x = smooth_images(64 if quick else 256)
    names = list(CORRUPTIONS)
    ours = time_robustops(x, names)
    peer = time_imagecorruptions(x, names, max_images=16 if quick else None)
    rows, recs = [], []
    for n in names:
        p = peer[n] if peer else float("nan")
        rows.append([n, f"{ours[n]:.3f}", f"{p:.3f}", f"{p / ours[n]:.1f}x"])
        recs.append({"case": f"corruption {n}", "robustops_s": ours[n], "imagecorruptions_s": p})
    tot, ptot = sum(ours.values()), sum(peer.values()) if peer else float("nan")
    rows.append([f"all {len(names)} x 5 severities, {x.shape[0]} images 32x32", f"{tot:.2f}",
                 f"{ptot:.2f}", f"{ptot / tot:.1f}x"])
    recs.append({"case": "corruption suite", "robustops_s": tot, "imagecorruptions_s": ptot,
                 "images": x.shape[0], "corruptions": len(names)})
    return format_table(["corruption", "robustops s", "imagecorruptions s", "speedup"], rows), recs
