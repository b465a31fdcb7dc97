"""pgd_step benchmark: the fused step vs the eager composition it replaces and vs copy_.

The eager compositions are what attack code writes today (torchattacks' PGD and
PGDL2 updates); they are also checked against pgd_step_reference in the tests.
"""
from __future__ import annotations

import math
from typing import Dict, List, Sequence, Tuple

import torch
from torch import Tensor

from .. import backend
from ..ops.pgd_step import pgd_step_
from .timing import DeviceLike, Timing, count_dispatched, format_table, interleaved_timings

# Devices the section runs on (`robustops bench --device`).
DEVICES = ("cpu", "cuda")

SHAPES: Tuple[Tuple[int, ...], ...] = ((128, 3, 32, 32), (32, 3, 224, 224))
EPS, ALPHA = 8 / 255, 2 / 255
EPS_L2, ALPHA_L2 = 0.5, 0.1


def eager_linf_step(x: Tensor, x_nat: Tensor, grad: Tensor, eps: float, alpha: float,
                    lo: float = 0.0, hi: float = 1.0) -> Tensor:
    """The formula written out in eager PyTorch: sign, mul, add, sub, max, add, min, clamp."""
    x = x + alpha * grad.sign()
    x = torch.min(torch.max(x, x_nat - eps), x_nat + eps)
    return x.clamp(lo, hi)


def torchattacks_linf_step(x: Tensor, x_nat: Tensor, grad: Tensor, eps: float, alpha: float,
                           lo: float = 0.0, hi: float = 1.0) -> Tensor:
    """torchattacks' L-inf PGD update: sign, mul, add, sub, clamp, add, clamp."""
    x = x + alpha * grad.sign()
    delta = torch.clamp(x - x_nat, min=-eps, max=eps)
    return torch.clamp(x_nat + delta, min=lo, max=hi)


def eager_l2_step(x: Tensor, x_nat: Tensor, grad: Tensor, eps: float, alpha: float,
                  lo: float = 0.0, hi: float = 1.0) -> Tensor:
    """torchattacks' PGDL2 update (norm, divide, step, renorm-project, clamp)."""
    b = x.shape[0]
    g_norm = grad.reshape(b, -1).norm(p=2, dim=1) + 1e-10
    x = x + alpha * grad / g_norm.view(b, *([1] * (x.ndim - 1)))
    delta = x - x_nat
    d_norm = delta.reshape(b, -1).norm(p=2, dim=1)
    factor = torch.clamp(eps / d_norm, max=1.0)
    delta = delta * factor.view(b, *([1] * (x.ndim - 1)))
    return torch.clamp(x_nat + delta, min=lo, max=hi)


def make_inputs(shape: Sequence[int], dtype=torch.float32, seed: int = 0,
                memory_format=torch.contiguous_format, device: DeviceLike = None):
    """x_nat in [0, 1], x inside the L-inf ball, grad ~ N(0, 1); drawn on the CPU (the same
    values on every device), then moved to `device`."""
    gen = torch.Generator().manual_seed(seed)
    x_nat = torch.rand(*shape, generator=gen, dtype=dtype)
    x = (x_nat + (torch.rand(*shape, generator=gen, dtype=dtype) * 2 - 1) * EPS).clamp(0, 1)
    grad = torch.randn(*shape, generator=gen, dtype=dtype)
    return tuple(t.to(device or "cpu").contiguous(memory_format=memory_format)
                 for t in (x, x_nat, grad))


def gpu_backends(device: DeviceLike) -> Tuple[str, ...]:
    """The fused step's backends timed on `device`: auto alone on CPU; on CUDA, each GPU
    backend this install can run (cuda, triton), so both kernels get a row."""
    if torch.device(device or "cpu").type != "cuda":
        return ("auto",)
    return tuple(b for b in ("cuda", "triton") if b in backend.available()) or ("auto",)


def measure_timings(shape: Sequence[int], norm: str = "linf", repeats: int = 100,
                    device: DeviceLike = None, backend_name: str = "auto") -> Dict[str, Timing]:
    """Median and IQR of fused, fused-through-dispatcher, eager and copy_, side by side.

    backend_name: the backend the public pgd_step_ runs (the dispatcher row always runs
    the op library's kernel for the device, so it is left out for triton).
    """
    x, x_nat, grad = make_inputs(shape, device=device)
    dst = torch.empty_like(x)
    eps, alpha = (EPS, ALPHA) if norm == "linf" else (EPS_L2, ALPHA_L2)
    eager = eager_linf_step if norm == "linf" else eager_l2_step
    peer = torchattacks_linf_step if norm == "linf" else eager_l2_step
    op = torch.ops.robustops.pgd_step_.default
    cases = {
        # The step is idempotent enough on a fixed x: re-running it keeps the
        # same memory traffic; x is refreshed by the step itself.
        "fused": lambda: pgd_step_(x, x_nat, grad, eps, alpha, norm=norm),
        "fused_dispatcher": lambda: op(x, x_nat, grad, eps, alpha, None, None, 0.0, 1.0, norm),
        # Same input tensors for every case, so they share one cache state.
        "eager": lambda: eager(x, x_nat, grad, eps, alpha),
        "torchattacks_form": lambda: peer(x, x_nat, grad, eps, alpha),
        "copy": lambda: dst.copy_(x_nat),
    }
    if backend_name == "triton":
        del cases["fused_dispatcher"]
    with backend.use(backend_name):
        return interleaved_timings(cases, repeats=repeats, device=device)


def measure(shape: Sequence[int], norm: str = "linf", repeats: int = 100,
            device: DeviceLike = None) -> Dict[str, float]:
    """Median seconds of fused, fused-through-dispatcher, eager and copy_, timed side by side."""
    return {k: t.median for k, t in measure_timings(shape, norm, repeats, device).items()}


def dispatched_ops(shape: Sequence[int] = (8, 3, 32, 32), norm: str = "linf",
                   device: DeviceLike = None) -> Dict[str, int]:
    """ATen/custom ops dispatched by one fused step and by one eager step."""
    x, x_nat, grad = make_inputs(shape, device=device)
    eps, alpha = (EPS, ALPHA) if norm == "linf" else (EPS_L2, ALPHA_L2)
    eager = eager_linf_step if norm == "linf" else eager_l2_step
    fused = count_dispatched(lambda: pgd_step_(x, x_nat, grad, eps, alpha, norm=norm))
    eag = count_dispatched(lambda: eager(x, x_nat, grad, eps, alpha))
    return {"fused": fused.total, "eager": eag.total}


def step_bytes(shape: Sequence[int], itemsize: int = 4) -> int:
    """Bytes one step must move at least: read x, x_nat and grad, write x (copy_ moves 2)."""
    return 4 * math.prod(shape) * itemsize


def report(shapes: Sequence[Sequence[int]] = SHAPES, norms: Sequence[str] = ("linf", "l2"),
           repeats: int = 100, device: DeviceLike = None) -> Tuple[str, List[dict]]:
    """The ratio table (text) and its rows (dicts) for `robustops bench`; on CUDA one row per
    GPU backend (cuda, triton) of the fused step."""
    from ..progress import progress

    dev = torch.device(device or "cpu")
    rows, records = [], []
    todo = [(norm, shape, b) for norm in norms for shape in shapes for b in gpu_backends(dev)]
    ops_by_norm = {norm: dispatched_ops(norm=norm, device=dev) for norm in norms}
    for norm, shape, backend_name in progress(todo, desc="pgd_step cases", unit="case"):
        ops = ops_by_norm[norm]
        timings = measure_timings(shape, norm, repeats, dev, backend_name)
        t = {k: v.median for k, v in timings.items()}
        nbytes = step_bytes(shape)
        gbs_fused = nbytes / t["fused"] / 1e9
        gbs_copy = nbytes / 2 / t["copy"] / 1e9  # copy_ reads and writes one tensor
        via_op = t.get("fused_dispatcher")
        rec = {
            "op": "pgd_step", "norm": norm, "shape": list(shape), "device": str(dev),
            "backend": backend_name,
            **{f"{case}_{key}": value for case, timing in timings.items()
               for key, value in timing.as_dict(scale=1e6, unit="us").items()},
            "speedup_vs_eager": t["eager"] / t["fused"],
            "speedup_vs_eager_dispatcher": t["eager"] / via_op if via_op else None,
            "speedup_vs_torchattacks_form": t["torchattacks_form"] / t["fused"],
            "fused_gbs": gbs_fused, "copy_gbs": gbs_copy,
            "fraction_of_copy_bw": gbs_fused / gbs_copy,
            "ops_fused": ops["fused"], "ops_eager": ops["eager"],
        }
        records.append(rec)
        where = "" if dev.type == "cpu" else f" [{dev.type} {backend_name}]"
        rows.append([f"pgd_step {norm} {tuple(shape)}{where}",
                     f"{rec['fused_us']:.1f} ({rec['fused_iqr_us']:.1f})",
                     f"{via_op * 1e6:.1f}" if via_op else "-",
                     f"{rec['eager_us']:.1f} ({rec['eager_iqr_us']:.1f})",
                     f"{rec['speedup_vs_eager']:.1f}x",
                     f"{rec['speedup_vs_torchattacks_form']:.1f}x",
                     f"{gbs_fused:.1f}", f"{gbs_copy:.1f}",
                     f"{100 * rec['fraction_of_copy_bw']:.0f}%",
                     f"{ops['fused']} vs {ops['eager']}"])
    headers = ["case (float32)", "fused us (IQR)", "via op us", "eager us (IQR)", "speedup",
               "vs torchattacks form",
               "fused GB/s", "copy_ GB/s", "of copy_ bw", "ATen ops"]
    return format_table(headers, rows), records
