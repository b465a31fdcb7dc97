"""pgd_step benchmark: the fused step vs the eager composition it replaces and vs copy_.

The eager compositions are what attack code writes today (torchattacks' PGD and
PGDL2 updates); they are also checked against pgd_step_reference in the tests.
"""
from __future__ import annotations

import math
from typing import Dict, List, Sequence, Tuple

import torch
from torch import Tensor

from ..ops.pgd_step import pgd_step_
from .timing import count_dispatched, format_table, interleaved_medians

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
                memory_format=torch.contiguous_format):
    """x_nat in [0, 1], x inside the L-inf ball, grad ~ N(0, 1)."""
    gen = torch.Generator().manual_seed(seed)
    x_nat = torch.rand(*shape, generator=gen, dtype=dtype)
    x = (x_nat + (torch.rand(*shape, generator=gen, dtype=dtype) * 2 - 1) * EPS).clamp(0, 1)
    grad = torch.randn(*shape, generator=gen, dtype=dtype)
    return tuple(t.contiguous(memory_format=memory_format) for t in (x, x_nat, grad))


def measure(shape: Sequence[int], norm: str = "linf", repeats: int = 100) -> Dict[str, float]:
    """Median seconds of fused, fused-through-dispatcher, eager and copy_, timed side by side."""
    x, x_nat, grad = make_inputs(shape)
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
    return interleaved_medians(cases, repeats=repeats)


def dispatched_ops(shape: Sequence[int] = (8, 3, 32, 32), norm: str = "linf") -> Dict[str, int]:
    """ATen/custom ops dispatched by one fused step and by one eager step."""
    x, x_nat, grad = make_inputs(shape)
    eps, alpha = (EPS, ALPHA) if norm == "linf" else (EPS_L2, ALPHA_L2)
    eager = eager_linf_step if norm == "linf" else eager_l2_step
    fused = count_dispatched(lambda: pgd_step_(x, x_nat, grad, eps, alpha, norm=norm))
    eag = count_dispatched(lambda: eager(x, x_nat, grad, eps, alpha))
    return {"fused": fused.total, "eager": eag.total}


def report(shapes: Sequence[Sequence[int]] = SHAPES, norms: Sequence[str] = ("linf", "l2"),
           repeats: int = 100) -> Tuple[str, List[dict]]:
    """The ratio table (text) and its rows (dicts) for `robustops bench`."""
    from tqdm import tqdm

    rows, records = [], []
    todo = [(norm, shape) for norm in norms for shape in shapes]
    ops_by_norm = {norm: dispatched_ops(norm=norm) for norm in norms}
    for norm, shape in tqdm(todo, desc="pgd_step cases", unit="case", leave=False, disable=None):
        ops = ops_by_norm[norm]
        t = measure(shape, norm, repeats)
        numel = math.prod(shape)
        nbytes = numel * 4
        # Bytes the step must move: read x, x_nat, grad; write x. copy_ moves 2.
        gbs_fused = 4 * nbytes / t["fused"] / 1e9
        gbs_copy = 2 * nbytes / t["copy"] / 1e9
        rec = {
            "op": "pgd_step", "norm": norm, "shape": list(shape),
            "fused_us": t["fused"] * 1e6, "fused_dispatcher_us": t["fused_dispatcher"] * 1e6,
            "eager_us": t["eager"] * 1e6, "torchattacks_form_us": t["torchattacks_form"] * 1e6,
            "copy_us": t["copy"] * 1e6,
            "speedup_vs_eager": t["eager"] / t["fused"],
            "speedup_vs_eager_dispatcher": t["eager"] / t["fused_dispatcher"],
            "speedup_vs_torchattacks_form": t["torchattacks_form"] / t["fused"],
            "fused_gbs": gbs_fused, "copy_gbs": gbs_copy,
            "fraction_of_copy_bw": gbs_fused / gbs_copy,
            "ops_fused": ops["fused"], "ops_eager": ops["eager"],
        }
        records.append(rec)
        rows.append([f"pgd_step {norm} {tuple(shape)}",
                     f"{rec['fused_us']:.1f}", f"{rec['fused_dispatcher_us']:.1f}",
                     f"{rec['eager_us']:.1f}", f"{rec['speedup_vs_eager']:.1f}x",
                     f"{rec['speedup_vs_torchattacks_form']:.1f}x",
                     f"{gbs_fused:.1f}", f"{gbs_copy:.1f}",
                     f"{100 * rec['fraction_of_copy_bw']:.0f}%",
                     f"{ops['fused']} vs {ops['eager']}"])
    headers = ["case (float32)", "fused us", "via op us", "eager us", "speedup",
               "vs torchattacks form",
               "fused GB/s", "copy_ GB/s", "of copy_ bw", "ATen ops"]
    return format_table(headers, rows), records
