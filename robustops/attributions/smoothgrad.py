"""SmoothGrad (Smilkov et al., 2017): an attribution averaged over noisy copies of the input.

    SG(x) = (1/n) sum_j A(x + sigma * eps_j),   eps_j ~ N(0, I)

The noise is counter-based (robustops.counter_rng), keyed by (seed, global sample
index, draw j, element): a sample gets the same noise whatever its batch, the
number of processes or the device, so SmoothGrad maps are reproducible and
shardable. The n noisy copies of all B samples are batched along the batch
dimension (draw-major) and chunked by ``internal_batch_size`` like IG's path points.
"""
from __future__ import annotations

import math
from typing import Optional, Union

import torch
from torch import Tensor, nn

from ..arguments import non_negative, positive_int
from ..counter_rng import counter_normal, sample_index
from .integrated_gradients import _check_internal_batch_size
from .targets import (Output, Target, check_input, check_output, leaf_for_grad,
                      resolve_target, scalar_output)

__all__ = ["smoothgrad", "SMOOTHGRAD_STREAM", "SMOOTHGRAD_METHODS"]

# Counter stream of SmoothGrad's noise ("SG"), apart from the other users' streams.
SMOOTHGRAD_STREAM = 0x5347
SMOOTHGRAD_METHODS = ("saliency", "gradient", "input_x_gradient")


def smoothgrad(model: nn.Module, x: Tensor, target: Target = None, *, samples: int = 16,
               stdev: float = 0.15, method: str = "saliency", seed: int = 0,
               index: Union[None, int, Tensor] = None, internal_batch_size: Optional[int] = None,
               output: Output = "logit", create_graph: bool = False) -> Tensor:
    """Mean of `method` over `samples` noisy copies x + stdev * N(0, 1), (B, ...) like x.

    method: 'saliency' (|gradient|, captum's NoiseTunnel over Saliency), 'gradient'
    (signed) or 'input_x_gradient' ((x + noise) * gradient); stdev: absolute noise
    standard deviation (>= 0); seed, index: key the counter-based noise (index: global
    sample indices, None = 0..B-1, or an int offset). Other arguments as for
    integrated_gradients; create_graph keeps the result differentiable.
    """
    check_input("smoothgrad", model, x)
    output = check_output(output)
    positive_int(samples, "samples", where="smoothgrad")
    non_negative(stdev, "stdev", where="smoothgrad")
    if method not in SMOOTHGRAD_METHODS:
        raise ValueError(f"smoothgrad: method must be one of {', '.join(SMOOTHGRAD_METHODS)}, "
                         f"got {method!r}")
    _check_internal_batch_size(internal_batch_size, "smoothgrad")
    t = resolve_target("smoothgrad", model, x, target)
    b = x.shape[0]
    if b == 0:
        return torch.zeros_like(x)
    idx = sample_index(b, index, x.device)
    numel = math.prod(x.shape[1:])
    # (B, samples * numel) -> (samples, B, ...): draw j of sample b is row j*B + b.
    noise = counter_normal(seed, SMOOTHGRAD_STREAM, idx, samples * numel, x.dtype)
    noise = noise.reshape((b, samples) + tuple(x.shape[1:])).transpose(0, 1)
    per_chunk = samples if internal_batch_size is None else max(1, internal_batch_size // b)
    total: Optional[Tensor] = None
    with torch.enable_grad():
        xs = x if create_graph else x.detach()
        for j0 in range(0, samples, per_chunk):
            sc = min(per_chunk, samples - j0)
            noisy = (xs.unsqueeze(0) + stdev * noise[j0:j0 + sc]).reshape((sc * b,) + x.shape[1:])
            pts = leaf_for_grad(noisy, create_graph)
            y = scalar_output(model(pts), t.repeat(sc), output)
            (g,) = torch.autograd.grad(y.sum(), pts, create_graph=create_graph)
            if method == "saliency":
                g = g.abs()
            elif method == "input_x_gradient":
                g = pts * g
            part = g.reshape((sc,) + tuple(x.shape)).sum(0)
            total = part if total is None else total + part
    return total / samples
