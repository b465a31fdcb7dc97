"""Integrated gradients (Sundararajan et al., 2017) with path points batched and chunked.

    IG(a -> x)_i = (x_i - a_i) * sum_s w_s d output(a + alpha_s (x - a)) / dx_i

The S path points of all B samples go through the model as one batch of S*B
(step-major, so the gradients reshape to (S, B, ...) for free), split into chunks
of ``internal_batch_size`` model inputs to bound memory; each chunk's gradients are
folded into the result at once by the fused ``robustops::ig_accumulate`` op, so
the (S, B, ...) gradient tensor of the whole path never exists (captum keeps every
chunk's gradients and sums them at the end).

With ``create_graph=True`` the result is a differentiable function of x, the
baseline and the model's parameters (double backprop through the model), so it
can sit inside a training loss (IG-NORM, IG-SUM-NORM, CACR, WACR) or be attacked
(the top-k attribution attack).

Quadrature (``method``): METHODS.md's right Riemann sum (alpha_s = s/m, w_s = 1/m)
by default; also captum's riemann_left / riemann_middle / riemann_trapezoid /
gausslegendre, with captum's alphas and weights.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..arguments import positive_int, require_int
from ..ops.ig_accumulate import ig_accumulate
from .targets import (Output, Target, check_input, check_output, resolve_target,
                      scalar_output)

__all__ = ["integrated_gradients", "integrated_gradients_multi", "path_alphas", "METHODS"]

METHODS = ("riemann_right", "riemann_left", "riemann_middle", "riemann_trapezoid",
           "gausslegendre")


def path_alphas(steps: int, method: str = "riemann_right") -> Tuple[List[float], List[float]]:
    """(alphas, weights) of the S = steps path points: point s is a + alphas[s] (x - a)."""
    positive_int(steps, "steps")
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    m = steps
    if method == "gausslegendre":
        import numpy as np

        nodes, w = np.polynomial.legendre.leggauss(m)
        return [float(v) for v in 0.5 * (nodes + 1)], [float(v) for v in 0.5 * w]
    weights = [1.0 / m] * m
    if method == "riemann_right":
        return [(s + 1) / m for s in range(m)], weights
    if method == "riemann_left":
        return [s / m for s in range(m)], weights
    if method == "riemann_middle":
        return [(s + 0.5) / m for s in range(m)], weights
    if m < 2:
        raise ValueError("riemann_trapezoid needs steps >= 2")
    # captum's trapezoid: alphas linspace(0, 1, m), steps 1/m with the end ones halved.
    weights[0] /= 2
    weights[-1] /= 2
    return [s / (m - 1) for s in range(m)], weights


def _check_internal_batch_size(v, where: Optional[str] = None) -> Optional[int]:
    return None if v is None else require_int(v, "internal_batch_size", where=where, minimum=1,
                                              what="None or an int >= 1")


def integrated_gradients_multi(model: nn.Module, x: Tensor, targets: Sequence[Target], *,
                               baseline: Optional[Tensor] = None, steps: int = 50,
                               method: str = "riemann_right",
                               internal_batch_size: Optional[int] = None,
                               output: Output = "logit", create_graph: bool = False
                               ) -> List[Tensor]:
    """IG of several targets along one path: one forward pass per chunk serves them all.

    Returns one (B, ...) attribution per entry of targets (e.g. CACR's true class and
    most likely wrong class). Other arguments as for integrated_gradients.
    """
    check_input("integrated_gradients", model, x)
    output = check_output(output)
    internal_batch_size = _check_internal_batch_size(internal_batch_size)
    alphas, weights = path_alphas(steps, method)
    if len(targets) == 0:
        raise ValueError("integrated_gradients: give at least one target")
    ts = [resolve_target("integrated_gradients", model, x, t) for t in targets]
    if baseline is None:
        baseline = torch.zeros_like(x)
    elif not isinstance(baseline, Tensor):
        raise ValueError(f"integrated_gradients: baseline must be a tensor or None, got "
                         f"{type(baseline).__name__}")
    else:
        try:
            baseline = torch.broadcast_to(baseline.to(x.dtype), x.shape)
        except RuntimeError:
            raise ValueError(f"integrated_gradients: baseline {tuple(baseline.shape)} does not "
                             f"broadcast to x {tuple(x.shape)}") from None
    b = x.shape[0]
    if b == 0:
        return [torch.zeros_like(x) for _ in ts]
    per_chunk = steps if internal_batch_size is None else max(1, internal_batch_size // b)
    # Without create_graph nothing flows back into x or the baseline: work on detached copies.
    xs, base = (x, baseline) if create_graph else (x.detach(), baseline.detach())
    base = base.contiguous()  # a broadcast baseline, materialised once rather than per chunk
    delta = xs - base
    shape = (1,) * (x.ndim - 1)
    results: List[Optional[Tensor]] = [None] * len(ts)
    with torch.enable_grad():
        for s0 in range(0, steps, per_chunk):
            al = alphas[s0:s0 + per_chunk]
            sc = len(al)
            a_t = torch.tensor(al, dtype=x.dtype, device=x.device).reshape((sc, 1) + shape)
            points = (base.unsqueeze(0) + a_t * delta.unsqueeze(0)).reshape((sc * b,) + x.shape[1:])
            if not points.requires_grad:
                points.requires_grad_(True)
            out = model(points)
            for j, t in enumerate(ts):
                y = scalar_output(out, t.repeat(sc), output)
                last = j == len(ts) - 1
                (g,) = torch.autograd.grad(y.sum(), points, create_graph=create_graph,
                                           retain_graph=create_graph or not last)
                part = ig_accumulate(g.reshape((sc,) + tuple(x.shape)), xs, base,
                                     weights=weights[s0:s0 + sc])
                results[j] = part if results[j] is None else results[j] + part
    return results  # type: ignore[return-value]


def integrated_gradients(model: nn.Module, x: Tensor, target: Target = None, *,
                         baseline: Optional[Tensor] = None, steps: int = 50,
                         method: str = "riemann_right", internal_batch_size: Optional[int] = None,
                         output: Output = "logit", create_graph: bool = False) -> Tensor:
    """Integrated gradients of output(model(.))[target] from baseline to x, (B, ...) like x.

    x: (B, ...) floating; target: int, (B,) int64 or None (the predicted class);
    baseline: None (zeros) or a tensor broadcastable to x; steps: path points m;
    method: quadrature (see module docstring); internal_batch_size: model inputs per
    forward pass (path points are chunked by internal_batch_size // B steps; None: all
    S*B at once); output: which scalar to explain (robustops.attributions.targets);
    create_graph: keep the result differentiable (training losses, attacks).
    Matches captum.attr.IntegratedGradients(model).attribute(x, baselines, target,
    n_steps=steps, method=method).
    """
    return integrated_gradients_multi(model, x, [target], baseline=baseline, steps=steps,
                                      method=method, internal_batch_size=internal_batch_size,
                                      output=output, create_graph=create_graph)[0]
