"""pytest-benchmark: fused pgd_step vs the eager composition vs copy_, per shape and device
(CPU; on a GPU the CUDA and Triton kernels, skipped without one). extra_info: bytes the
timed call must move, GB/s at the median, dispatched ops.
Run: python -m pytest benchmarks --benchmark-group-by=param:shape,param:norm
(`robustops bench [--device cuda]` prints the same comparison as one ratio table.)
"""
import math

import pytest
import torch
from robustops import pgd_step_, pgd_step_reference
from robustops.bench.pgd_step import (ALPHA, ALPHA_L2, EPS, EPS_L2, SHAPES, eager_l2_step,
                                      eager_linf_step, make_inputs, step_bytes,
                                      torchattacks_linf_step)
from robustops.bench.timing import keep_freed_memory
from robustops.testing import assert_close

keep_freed_memory()  # eager at its best: no page re-faulting between calls

IMPLS = ("fused", "eager", "torchattacks_form", "copy")


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_pgd_step(benchmark, device_backend, synced, throughput, baseline_once, shape, norm,
                  impl):
    device, backend_name = device_backend
    x, x_nat, grad = make_inputs(shape, device=device)
    eps, alpha = (EPS, ALPHA) if norm == "linf" else (EPS_L2, ALPHA_L2)
    expected = pgd_step_reference(x, x_nat, grad, eps, alpha, norm)
    benchmark.group = f"pgd_step {norm} {shape} {device}"
    copy_bytes = 2 * math.prod(shape) * x.element_size()  # read one tensor, write one
    if impl == "fused":
        x_work = x.clone()

        def call():
            return pgd_step_(x_work.copy_(x), x_nat, grad, eps, alpha, norm=norm)
        out = benchmark(synced(call, device))
        # copy_ inside the timed call keeps every call identical; subtract the
        # copy row of the same group to read the step alone.
        throughput(call, step_bytes(shape) + copy_bytes)
    elif impl == "eager":
        baseline_once()
        eager = eager_linf_step if norm == "linf" else eager_l2_step
        out = benchmark(synced(eager, device), x, x_nat, grad, eps, alpha)
        throughput(lambda: eager(x, x_nat, grad, eps, alpha), step_bytes(shape))
    elif impl == "torchattacks_form":
        if norm == "l2":
            pytest.skip("the eager L2 row already is torchattacks' PGDL2 form")
        baseline_once()
        out = benchmark(synced(torchattacks_linf_step, device), x, x_nat, grad, eps, alpha)
        throughput(lambda: torchattacks_linf_step(x, x_nat, grad, eps, alpha), step_bytes(shape))
    else:
        baseline_once()
        dst = torch.empty_like(x)
        benchmark(synced(dst.copy_, device), x)
        throughput(lambda: dst.copy_(x), copy_bytes)
        return
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6) if norm == "l2" \
        else assert_close(out, expected)
