"""part_moments benchmark: the fused op vs the eager PyTorch composition it replaces.

The eager side is ``part_moments_reference`` (softmax over channels, marginals, centre,
spread about the centre, the foreground-weighted score) differentiated by autograd:
the code a part model would otherwise run. Both sides run forward + backward (the
gradient wrt the logits, as in training and in every attack step) on the issue's shape
(32, 11, 64, 64), side by side in one process (interleaved medians), with the ATen ops
each dispatches per call. A clone of the logits (one read + one write of the tensor)
gives the memory-traffic scale.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Tuple

import torch

from ..ops.part_moments import part_moments, part_moments_reference
from .timing import DeviceLike, count_dispatched, format_table, interleaved_timings

SHAPE = (32, 11, 64, 64)  # (B, K+1, H, W): the benchmark shape
QUICK_SHAPE = (8, 11, 32, 32)
DEVICES = ("cpu", "cuda")  # `robustops bench --device`


def cases(shape=SHAPE, weighted: bool = True, seed: int = 0,
          device: DeviceLike = None) -> Dict[str, Callable[[], object]]:
    """{'fused fwd', 'eager fwd', 'fused fwd+bwd', 'eager fwd+bwd', 'clone'} closures, on
    `device` (inputs drawn on the CPU, the same on every device)."""
    g = torch.Generator().manual_seed(seed)
    dev = device or "cpu"
    logits = (torch.randn(shape, generator=g) * 2).to(dev).requires_grad_(True)
    grad = torch.randn(shape[0], shape[1] - 1, 5, generator=g).to(dev)

    def fwd(fn):
        def run():
            with torch.no_grad():
                return fn(logits, weighted)
        return run

    def fwd_bwd(fn):
        def run():
            return torch.autograd.grad(fn(logits, weighted), logits, grad)[0]
        return run

    return {"fused fwd": fwd(part_moments), "eager fwd": fwd(part_moments_reference),
            "fused fwd+bwd": fwd_bwd(part_moments),
            "eager fwd+bwd": fwd_bwd(part_moments_reference),
            "clone": lambda: logits.detach().clone()}


def moved_bytes(shape, kind: str, itemsize: int = 4) -> int:
    """Bytes the fused op must move at least: read the logits (fwd); fwd+bwd reads them again
    and writes their gradient (the (B, K, 5) outputs and gradients are negligible)."""
    numel = 1
    for v in shape:
        numel *= v
    return numel * itemsize * (1 if kind == "fwd" else 3)


def report(quick: bool = False, repeats: int = 0,
           device: DeviceLike = None) -> Tuple[str, List[dict]]:
    """Rows for the ratio table: fused vs eager, forward and forward + backward, both heads'
    variants (bbox: weighted=False; weighted-bbox: weighted=True)."""
    shape = QUICK_SHAPE if quick else SHAPE
    repeats = repeats or (10 if quick else 30)
    rows, recs = [], []
    label = "x".join(str(v) for v in shape)
    for weighted in (True, False):
        c = cases(shape, weighted, device=device)
        timings = interleaved_timings(c, repeats=repeats, inner=3, warmup=3, device=device)
        t = {k: v.median for k, v in timings.items()}
        variant = "weighted-bbox" if weighted else "bbox"
        for kind in ("fwd", "fwd+bwd"):
            ours, eager = t[f"fused {kind}"], t[f"eager {kind}"]
            ops_ours = count_dispatched(c[f"fused {kind}"]).total
            ops_eager = count_dispatched(c[f"eager {kind}"]).total
            rows.append([f"part_moments {variant} {kind} {label}", f"{ours * 1e3:.2f}",
                         f"{eager * 1e3:.2f}", f"{eager / ours:.2f}x",
                         f"{ops_ours} / {ops_eager}", f"{ours / t['clone']:.1f}"])
            recs.append({"case": f"part_moments {variant} {kind} {label}", "robustops_s": ours,
                         "baseline_s": eager, "speedup": eager / ours, "aten_ops": ops_ours,
                         "baseline_aten_ops": ops_eager, "clone_s": t["clone"],
                         "robustops_iqr_s": timings[f"fused {kind}"].iqr,
                         "baseline_iqr_s": timings[f"eager {kind}"].iqr,
                         "robustops_gbs": moved_bytes(shape, kind) / ours / 1e9,
                         "device": str(torch.device(device or "cpu"))})
    table = format_table(["case", "fused ms", "eager ms", "speedup", "ops fused / eager",
                          "fused / clone"], rows)
    return table, recs
