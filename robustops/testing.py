"""Tolerances and comparison helpers shared by the tests and the benchmarks.

One table of per-dtype tolerances for every op: float64 is near-exact, float32
allows reduction-order differences, half types allow one unit in the last place
of their storage format (kernels compute in float32 and round once).
"""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
import torch

# dtype -> (rtol, atol)
TOLERANCES: Dict[torch.dtype, Tuple[float, float]] = {
    torch.float64: (1e-10, 1e-12),
    torch.float32: (1e-5, 1e-6),
    torch.float16: (1e-3, 1e-3),
    torch.bfloat16: (8e-3, 8e-3),
}


def tolerance(dtype: torch.dtype) -> Tuple[float, float]:
    """(rtol, atol) for comparing a kernel's output of `dtype` with its reference."""
    try:
        return TOLERANCES[dtype]
    except KeyError:
        raise ValueError(f"no tolerance defined for {dtype}") from None


def assert_close(actual: torch.Tensor, expected: torch.Tensor, msg: str = "") -> None:
    """torch.testing.assert_close with robustops' tolerance for expected.dtype."""
    rtol, atol = tolerance(expected.dtype)
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, equal_nan=True,
                               msg=(lambda m: f"{msg}: {m}") if msg else None)


def skip_cuda_tests_without_gpu(items, skip_marker) -> None:
    """pytest_collection_modifyitems body shared by tests/ and benchmarks/: items marked
    `cuda` get `skip_marker` (pytest.mark.skip(...)) when no CUDA GPU is visible. (pytest
    is the caller's: the library does not import it.)"""
    if torch.cuda.is_available():
        return
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip_marker)


def vonenet_gabor_kernel(frequency, sigma_x, sigma_y, theta=0, offset=0, ks=61,
                         dtype=torch.float):
    """VOneNet's gabor_kernel (dicarlolab/vonenet, vonenet/utils.py), transcribed.

    The one change: the grid's dtype is an argument (VOneNet hard-codes torch.float).
    """
    w = ks // 2
    grid_val = torch.arange(-w, w + 1, dtype=dtype)
    x, y = torch.meshgrid(grid_val, grid_val, indexing="ij")  # VOneNet's default indexing
    rotx = x * np.cos(theta) + y * np.sin(theta)
    roty = -x * np.sin(theta) + y * np.cos(theta)
    g = torch.zeros(y.shape, dtype=dtype)
    g[:] = torch.exp(-0.5 * (rotx ** 2 / sigma_x ** 2 + roty ** 2 / sigma_y ** 2))
    g /= 2 * np.pi * sigma_x * sigma_y
    g *= torch.cos(2 * np.pi * frequency * rotx + offset)
    return g
