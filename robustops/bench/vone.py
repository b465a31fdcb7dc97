"""V1 front-end benchmark: VOneBlock (grouped convolution + fused epilogue) vs VOneNet's
dense formulation (two dense convolutions + eager epilogue with torch.randn noise), and a
fused 3-member ensemble front-end vs three separate front-ends. Side by side, one process.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import torch

from ..models.ensemble import FusedVOneFrontEnd
from ..models.vonenet import v1_block_config
from ..nn.vone_block import VOneBlock, dense_forward, dense_weights
from .timing import DeviceLike, format_table, interleaved_timings

# (image size, batch): VOneNet's 224 geometry and the 64-pixel preset, 512 channels.
CASES = ((224, 4), (64, 4))
# Ensembles: members sharing one bank (noise variants) and members with distinct banks.
ENSEMBLES = {"noise variants (one bank)": ("base", "noise_low", "noise_high"),
             "sf bands + base (3 banks)": ("base", "low_sf", "high_sf")}
DEVICES = ("cpu", "cuda")  # `robustops bench --device`


def _fwd_bwd(fn, x, w):
    xr = x.detach().requires_grad_(True)
    (fn(xr) * w).sum().backward()
    return xr.grad


def front_end_cases(size: int, batch: int, device: DeviceLike = None) -> Dict[str, callable]:
    dev = device or "cpu"
    block = VOneBlock(noise_mode="fixed", **{k: v for k, v in v1_block_config(size).items()})
    block = block.to(dev)
    weights = dense_weights(block)
    x = torch.rand(batch, 3, size, size).to(dev)
    w = torch.randn(block(x[:1]).shape[1:]).to(dev)

    def dense(z):
        return dense_forward(block, z, weights=weights, normal=torch.randn_like)

    return {"robustops fwd": lambda: block(x), "dense fwd": lambda: dense(x),
            "robustops fwd+bwd": lambda: _fwd_bwd(block, x, w),
            "dense fwd+bwd": lambda: _fwd_bwd(dense, x, w)}


def ensemble_cases(variants, size: int = 224, batch: int = 4,
                   device: DeviceLike = None) -> Dict[str, callable]:
    dev = device or "cpu"
    blocks = [VOneBlock(**v1_block_config(size, v, noise_mode="fixed")).to(dev) for v in variants]
    fused = FusedVOneFrontEnd(blocks).to(dev)
    x = torch.rand(batch, 3, size, size).to(dev)
    return {"fused": lambda: fused(x), "separate": lambda: [b(x) for b in blocks]}, fused


def report(quick: bool = False, repeats: int = 5,
           device: DeviceLike = None) -> Tuple[str, List[dict]]:
    """Rows for `robustops bench --only vone`."""
    rows, recs = [], []
    torch.manual_seed(0)
    for size, batch in (CASES[1:] if quick else CASES):
        timings = interleaved_timings(front_end_cases(size, batch, device), repeats=repeats,
                                      inner=1, warmup=1, device=device)
        t = {k: v.median for k, v in timings.items()}
        for kind in ("fwd", "fwd+bwd"):
            ours, dense = t[f"robustops {kind}"], t[f"dense {kind}"]
            rows.append([f"VOneBlock {kind} {batch}x3x{size}x{size}, 512 ch", f"{ours * 1e3:.1f}",
                         f"{dense * 1e3:.1f}", f"{dense / ours:.2f}x"])
            recs.append({"case": f"vone {kind} {size}", "robustops_s": ours, "baseline_s": dense,
                         "robustops_iqr_s": timings[f"robustops {kind}"].iqr,
                         "baseline_iqr_s": timings[f"dense {kind}"].iqr})
    for label, variants in ENSEMBLES.items():
        size = 64 if quick else 224
        cases, fused = ensemble_cases(variants, size=size, device=device)
        timings = interleaved_timings(cases, repeats=repeats, inner=1, warmup=1, device=device)
        t = {k: v.median for k, v in timings.items()}
        rows.append([f"3-member front-end, {label}, {fused.unique_filters}/{fused.total_filters} "
                     f"filters, 4x3x{size}x{size}", f"{t['fused'] * 1e3:.1f}",
                     f"{t['separate'] * 1e3:.1f}", f"{t['separate'] / t['fused']:.2f}x"])
        recs.append({"case": f"vone ensemble {label}", "robustops_s": t["fused"],
                     "baseline_s": t["separate"], "robustops_iqr_s": timings["fused"].iqr,
                     "baseline_iqr_s": timings["separate"].iqr})
    table = format_table(["case", "robustops ms", "baseline ms", "speedup"], rows)
    return table, recs
