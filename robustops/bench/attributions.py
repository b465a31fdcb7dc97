"""Robust-attribution benchmarks, side by side in one process (peak memory: one subprocess
per case).

1. Rank metrics (METHODS.md section 5): top-k intersection + Kendall tau-b + Spearman rho
   of 64 map pairs, 28x28 and 128x128, batched (robustops.rank_metrics) vs the per-pair
   loop of the reference scripts (scipy.stats.kendalltau + scipy.stats.spearmanr + numpy
   argsort top-k). The PyTorch reference backend (what CUDA tensors run) is shown for
   28x28 (on CPU it is slower than scipy: its sorts are what a GPU is for).
2. Integrated gradients, chunked (path points batched, folded in per chunk by the fused
   ig_accumulate op) vs captum's IntegratedGradients with the same n_steps (and method):
   captum unchunked (its default) and captum with the same internal_batch_size.
   Time: interleaved medians. Peak memory: each case runs in a fresh Python process that
   builds the model and input, runs the case once (one-time allocations: thread pools,
   oneDNN primitives), frees and malloc_trim(0)s, resets the kernel's resident-set
   high-water mark (writing 5 to /proc/self/clear_refs), then runs the case again; the
   reported peak is VmHWM minus the resident set just before that call, i.e. the most
   physical memory the call held at once. The subprocess runs with glibc's mmap
   threshold fixed at 64 KiB (MALLOC_MMAP_THRESHOLD_), so every tensor is its own
   mapping and freed tensors leave the resident set at once (repeat runs then agree to
   within 1%; with the adaptive default they varied by 30%). It counts everything the call touches (tensors,
   autograd graph, allocator slack), is exact rather than sampled, and needs no hook in
   PyTorch's CPU allocator (which keeps no statistics); separate processes keep one
   case's freed-but-retained heap from hiding another's peak. Linux only.
3. The three fused regulariser ops, forward + backward, vs the eager PyTorch composition
   they replace.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from .timing import DeviceLike, format_table, interleaved_medians, interleaved_timings

# (side, k): MNIST-sized maps with METHODS.md's k = 100 and Flower-sized with k = 1000.
METRIC_CASES = ((28, 100), (128, 1000))
PAIRS = 64
# IG: (label, batch, image side, channels, n_steps, internal_batch_size).
# The second case has large inputs and a small chunk: there captum's stored per-step
# gradients (n_steps * B * C*H*W floats) show next to the chunk's activations.
IG_CASES = (("SmallCNN 1x28x28", 16, 28, 1, 50, 128), ("SmallCNN 3x64x64", 8, 64, 3, 50, 32))
IG_QUICK = (("SmallCNN 1x28x28", 4, 28, 1, 20, 32),)
# `robustops bench --device`: on CUDA only the fused-op rows run (the rank-metric and IG
# rows compare with CPU libraries and measure CPU peak memory).
DEVICES = ("cpu", "cuda")


# ----------------------------------------------------------------------------- rank metrics


def metric_maps(side: int, pairs: int = PAIRS, seed: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """Attribution-like map pairs (pairs, side, side): a positive map and a perturbed copy."""
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(pairs, side, side, generator=g) ** 3
    b = (a + 0.05 * torch.rand(pairs, side, side, generator=g)).clamp_min(0)
    return a, b


def scipy_loop(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """The per-pair loop of the TF1 reference scripts: scipy + numpy, one image at a time."""
    import scipy.stats

    out = np.empty((a.shape[0], 3))
    for i in range(a.shape[0]):
        x, y = a[i].ravel(), b[i].ravel()
        top = len(np.intersect1d(np.argsort(-x)[:k], np.argsort(-y)[:k])) / k
        out[i] = (top, scipy.stats.kendalltau(x, y).statistic,
                  scipy.stats.spearmanr(x, y).statistic)
    return out


def metric_cases(side: int, k: int) -> Dict[str, Callable[[], object]]:
    from .. import backend
    from ..ops.rank_metrics import rank_metrics

    a, b = metric_maps(side)
    an, bn = a.numpy(), b.numpy()

    def reference():
        with backend.use("reference"):
            return rank_metrics(a, b, k)

    cases = {"robustops": lambda: rank_metrics(a, b, k), "scipy": lambda: scipy_loop(an, bn, k)}
    if side <= 32:  # the reference's O(N log^2 N) CPU sorts take seconds at 128 x 128
        cases["reference"] = reference
    return cases


# ----------------------------------------------------------------------------- IG


def ig_setup(batch: int, side: int, channels: int, seed: int = 0):
    """An (untrained: speed does not depend on the weights) SmallCNN, images and targets."""
    from ..models.small_cnn import SmallCNN

    torch.manual_seed(seed)
    model = SmallCNN(in_channels=channels, image_size=side).eval()
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, channels, side, side, generator=g)
    return model, x, torch.randint(0, 10, (batch,), generator=g)


def ig_cases(batch: int, side: int, channels: int, steps: int, ibs: int
             ) -> Dict[str, Callable[[], object]]:
    from captum.attr import IntegratedGradients

    from ..attributions import integrated_gradients

    model, x, y = ig_setup(batch, side, channels)
    captum = IntegratedGradients(model)
    return {
        "robustops": lambda: integrated_gradients(model, x, y, steps=steps,
                                                  internal_batch_size=ibs),
        "captum": lambda: captum.attribute(x, target=y, n_steps=steps, method="riemann_right"),
        "captum_chunked": lambda: captum.attribute(x, target=y, n_steps=steps,
                                                   method="riemann_right", internal_batch_size=ibs),
    }


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _peak_in_this_process(case: str, spec: Tuple) -> float:
    """MiB of resident memory the case's call adds at its peak (see module docstring)."""
    import ctypes
    import gc

    fn = ig_cases(*spec)[case]
    fn()  # one-time allocations are not the case's working set
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current resident set
    base = _status_kb("VmRSS")
    fn()
    return (_status_kb("VmHWM") - base) / 1024


def peak_memory_mib(case: str, spec: Tuple, threads: Optional[int] = None) -> Optional[float]:
    """Run one IG case in a fresh process and return its peak MiB (None where unsupported)."""
    if not os.path.exists("/proc/self/clear_refs"):
        return None
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    # Every block of >= 64 KiB gets its own mapping, returned to the OS when freed: the
    # resident set then follows the live allocations (glibc's adaptive threshold would
    # otherwise keep some freed tensors in the heap and make repeated runs differ by 30%).
    env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    env["MALLOC_TRIM_THRESHOLD_"] = "0"
    cmd = [sys.executable, "-m", "robustops.bench.attributions", "--peak", case, json.dumps(spec)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if res.returncode != 0:
        raise RuntimeError(f"peak-memory subprocess failed: {res.stderr[-2000:]}")
    return float(json.loads(res.stdout.strip().splitlines()[-1])["peak_mib"])


# ----------------------------------------------------------------------------- fused ops


def _fwd_bwd(fn, *inputs):
    """Forward, backward, and dense gradients: eager autograd may hand back a stride-0
    expanded gradient (mean / sum backward) that every consumer here (the model's double
    backward, the next fused op) copies to a dense tensor anyway; both sides pay that."""
    leaves = [t.detach().requires_grad_(True) for t in inputs]
    out = fn(*leaves)
    return [g.contiguous() for g in torch.autograd.grad(out.sum(), leaves)]


def fused_op_cases(device: DeviceLike = None) -> Dict[str, Dict[str, Callable[[], object]]]:
    """{op label: {'robustops': fwd+bwd, 'eager': fwd+bwd}} at MNIST/Flower sizes, on
    `device` (inputs drawn on the CPU, the same on every device)."""
    from ..ops.ig_accumulate import ig_accumulate
    from ..ops.pixel_softmax_kl import pixel_softmax_kl
    from ..ops.sign_matched_product import sign_matched_product

    g = torch.Generator().manual_seed(0)
    pg = torch.randn(16, 64, 1, 28, 28, generator=g)
    x, a = torch.rand(64, 1, 28, 28, generator=g), torch.zeros(64, 1, 28, 28)
    attr = torch.randn(64, 3, 128, 128, generator=g)
    bm, dm = torch.randn(64, 3, 128, 128, generator=g), torch.randn(64, 3, 128, 128, generator=g)

    w = torch.linspace(0.5, 1.5, 16) / 16  # quadrature-like weights
    pg, x, a, attr, bm, dm, w = (t.to(device or "cpu") for t in (pg, x, a, attr, bm, dm, w))

    def ig_eager(pg, x, a):
        return (x - a) * pg.mean(0)

    def ig_eager_weighted(pg, x, a):
        return (x - a) * (w.view(-1, 1, 1, 1, 1) * pg).sum(0)

    def psk_eager(t):
        s = t.sum(1).flatten(1)
        return torch.logsumexp(s, 1) - s.mean(1) - float(np.log(s.shape[1]))

    def smp_eager(b, d):
        m = torch.sign(b) == torch.sign(d)
        return torch.where(m, b * d, d.abs()).flatten(1).sum(1)

    return {
        "ig_accumulate 16 steps x 64x1x28x28, uniform weights": {
            "robustops": lambda: _fwd_bwd(ig_accumulate, pg, x, a),
            "eager": lambda: _fwd_bwd(ig_eager, pg, x, a)},
        "ig_accumulate 16 steps x 64x1x28x28, quadrature weights": {
            "robustops": lambda: _fwd_bwd(lambda p, u, v: ig_accumulate(p, u, v, weights=w),
                                          pg, x, a),
            "eager": lambda: _fwd_bwd(ig_eager_weighted, pg, x, a)},
        "pixel_softmax_kl 64x3x128x128": {
            "robustops": lambda: _fwd_bwd(pixel_softmax_kl, attr),
            "eager": lambda: _fwd_bwd(psk_eager, attr)},
        "sign_matched_product 64x3x128x128": {
            "robustops": lambda: _fwd_bwd(sign_matched_product, bm, dm),
            "eager": lambda: _fwd_bwd(smp_eager, bm, dm)},
    }


# ----------------------------------------------------------------------------- report


def report(quick: bool = False, repeats: int = 5, memory: bool = True,
           device: DeviceLike = None) -> Tuple[str, List[dict]]:
    """Rows for `robustops bench`: (table, records) with times in seconds and peaks in MiB."""
    rows, recs = [], []
    reps = 3 if quick else repeats
    on_cpu = torch.device(device or "cpu").type == "cpu"
    for side, k in (METRIC_CASES if on_cpu else ()):
        t = interleaved_medians(metric_cases(side, k), repeats=reps, inner=1, warmup=1)
        label = f"top-k + Kendall + Spearman, {PAIRS} pairs {side}x{side}, k={k}"
        rows.append([label + " (vs scipy loop)", f"{t['robustops'] * 1e3:.1f}",
                     f"{t['scipy'] * 1e3:.1f}", f"{t['scipy'] / t['robustops']:.1f}x"])
        if "reference" in t:
            rows.append([label + ", PyTorch reference backend", f"{t['reference'] * 1e3:.1f}",
                         f"{t['scipy'] * 1e3:.1f}", f"{t['scipy'] / t['reference']:.1f}x"])
        recs.append({"case": f"rank metrics {side}", "robustops_s": t["robustops"],
                     "reference_backend_s": t.get("reference"), "baseline_s": t["scipy"],
                     "pairs": PAIRS, "k": k})
    for label, batch, side, ch, steps, ibs in ((IG_QUICK if quick else IG_CASES) if on_cpu else ()):
        spec = (batch, side, ch, steps, ibs)
        t = interleaved_medians(ig_cases(*spec), repeats=reps, inner=1, warmup=1)
        peaks = {c: peak_memory_mib(c, spec, torch.get_num_threads()) if memory else None
                 for c in ("robustops", "captum", "captum_chunked")}
        for other, name in (("captum", "captum"), ("captum_chunked", f"captum ibs={ibs}")):
            mem = ("" if peaks["robustops"] is None else
                   f"; peak {peaks['robustops']:.0f} vs {peaks[other]:.0f} MiB")
            rows.append([f"IG {label}, b{batch}, {steps} steps, ibs={ibs} vs {name}{mem}",
                         f"{t['robustops'] * 1e3:.1f}", f"{t[other] * 1e3:.1f}",
                         f"{t[other] / t['robustops']:.2f}x"])
        recs.append({"case": f"IG {label} b{batch} steps{steps}", "robustops_s": t["robustops"],
                     "baseline_s": t["captum"], "captum_chunked_s": t["captum_chunked"],
                     "internal_batch_size": ibs,
                     **{f"peak_mib_{c}": v for c, v in peaks.items()}})
    for label, cases in fused_op_cases(device).items():
        timings = interleaved_timings(cases, repeats=reps * 4, inner=1, warmup=2, device=device)
        t = {k: v.median for k, v in timings.items()}
        rows.append([f"{label} fwd+bwd vs eager PyTorch", f"{t['robustops'] * 1e3:.2f}",
                     f"{t['eager'] * 1e3:.2f}", f"{t['eager'] / t['robustops']:.2f}x"])
        recs.append({"case": label, "robustops_s": t["robustops"], "baseline_s": t["eager"],
                     "robustops_iqr_s": timings["robustops"].iqr,
                     "baseline_iqr_s": timings["eager"].iqr,
                     "device": str(torch.device(device or "cpu"))})
    table = format_table(["case", "robustops ms", "baseline ms", "speedup"], rows)
    return table, recs


def _main(argv: List[str]) -> int:
    if len(argv) == 3 and argv[0] == "--peak":
        spec = tuple(json.loads(argv[2]))
        print(json.dumps({"peak_mib": _peak_in_this_process(argv[1], spec)}))
        return 0
    quick = "--quick" in argv
    table, _ = report(quick=quick)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
