"""random_init: a random start inside the eps-ball, reproducible per sample.

Uniform in the L-inf ball, or uniform in the L2 ball (Gaussian direction, radius
eps * U^(1/D)), then clamped to [lo, hi] (one range, or one per channel). The draws are counter-based
(robustops.counter_rng): keyed by (seed, restart stream, global sample index,
element), so a sample gets the same start whatever the batch split or the number
of processes. Not an op of its own: the random numbers come from the fused
robustops::counter_rng op, and the rest (scale by eps, L2 normalisation, clamp)
is a few plain tensor ops on any device, with no host synchronisation.
"""
from __future__ import annotations

from typing import Union

import torch
from torch import Tensor

from .arguments import require_int
from .counter_rng import counter_normal, counter_uniform, sample_index
from .image_box import Bound, bounds_like, check_bounds
from .ops.pgd_step import _check_scalar, _opmath, _per_sample, _per_sample_values, normalize_norm

__all__ = ["random_init"]


def random_init(x_nat: Tensor, eps: Union[float, Tensor], norm: Union[str, float] = "linf",
                seed: int = 0, *, index: Union[None, int, Tensor] = None, restart: int = 0,
                lo: Bound = 0.0, hi: Bound = 1.0) -> Tensor:
    """A random point of the eps-ball around x_nat, clamped to [lo, hi].

    x_nat: (B, ...) floating images; eps: float or (B,) tensor, finite and >= 0 (checked as
    pgd_step checks it, per-sample values included); lo, hi: the box, finite, lo <= hi:
    floats, or one value per channel of x_nat (dimension 1) as a (C,) / (1, C, 1, 1) tensor
    or sequence (checked on the CPU: a GPU tensor is read once); norm: 'linf' | 'l2';
    seed: any int; index: global index of each sample (None: 0..B-1, int: offset of
    the first sample, or a (B,) int64 tensor); restart: separates the draws of restarts.
    Returns a new tensor shaped, typed and laid out like x_nat.
    """
    if not isinstance(x_nat, Tensor) or not x_nat.is_floating_point():
        raise TypeError("random_init: x_nat must be a floating tensor of images in [lo, hi]")
    if x_nat.ndim < 1 or x_nat.shape[0] == 0 or x_nat.numel() == 0:
        raise ValueError(f"random_init: empty batch (x_nat has shape {tuple(x_nat.shape)})")
    seed = require_int(seed, "seed", where="random_init")
    restart = require_int(restart, "restart", where="random_init", minimum=0)
    if x_nat.device.type == "cpu" and not bool(torch.isfinite(x_nat).all()):
        # As pgd_step (a free read on the CPU): a NaN/Inf image has no eps-ball.
        raise ValueError("random_init: x_nat contains NaN or Inf; check the images given "
                         "to the attack")
    norm = normalize_norm(norm)
    batch, nd = x_nat.shape[0], x_nat.ndim
    # pgd_step's checks and messages: eps finite and >= 0 (per-sample values too: read
    # on the CPU, an asynchronous assert on a GPU); the box as the attacks check it.
    eps_f, eps_t = _check_scalar(eps, "eps", batch, x_nat.device, "random_init", "x_nat")
    eps_t = _per_sample_values(eps_t, "eps", x_nat, "random_init")
    lo, hi = check_bounds(lo, hi, "random_init", strict=False)
    ct = _opmath(x_nat.dtype)
    e = _per_sample(eps_f if eps_t is None else eps_t, batch, nd, ct, x_nat.device)
    idx = sample_index(batch, index, x_nat.device)
    numel = x_nat.numel() // batch
    # Streams: 4*restart + {0: L-inf uniforms, 1: L2 direction, 2: L2 radius}.
    base = 4 * restart
    if norm == "linf":
        u = counter_uniform(seed, base, idx, numel, ct)
        delta = (2.0 * u - 1.0).reshape(x_nat.shape) * e
    else:
        z = counter_normal(seed, base + 1, idx, numel, ct)
        z = z / z.norm(dim=1, keepdim=True)
        r = counter_uniform(seed, base + 2, idx, 1, torch.float64).pow(1.0 / numel).to(ct)
        delta = (z * r).reshape(x_nat.shape) * e
    # Per-channel bounds: (1, C, 1, ..., 1) tensors (in the compute type), else floats.
    lo, hi = bounds_like(lo, hi, delta)
    out = (x_nat.to(ct) + delta).clamp_(lo, hi).to(x_nat.dtype)
    return out.contiguous(memory_format=_memory_format(x_nat))


def _memory_format(t: Tensor) -> torch.memory_format:
    if t.ndim == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format
