"""pytest-benchmark: fused pgd_step vs the eager composition vs copy_, per shape.

Run: python -m pytest benchmarks --benchmark-group-by=param:shape,param:norm
(`robustops bench` prints the same comparison as one ratio table.)
"""
import pytest
import torch

from robustops import pgd_step_, pgd_step_reference
from robustops.bench.pgd_step import (ALPHA, ALPHA_L2, EPS, EPS_L2, SHAPES, eager_l2_step,
                                      eager_linf_step, make_inputs, torchattacks_linf_step)
from robustops.bench.timing import keep_freed_memory
from robustops.testing import assert_close

keep_freed_memory()  # eager at its best: no page re-faulting between calls

IMPLS = ("fused", "eager", "torchattacks_form", "copy")


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_pgd_step(benchmark, shape, norm, impl):
    x, x_nat, grad = make_inputs(shape)
    eps, alpha = (EPS, ALPHA) if norm == "linf" else (EPS_L2, ALPHA_L2)
    expected = pgd_step_reference(x, x_nat, grad, eps, alpha, norm)
    benchmark.group = f"pgd_step {norm} {shape}"
    if impl == "fused":
        x_work = x.clone()
        out = benchmark(lambda: pgd_step_(x_work.copy_(x), x_nat, grad, eps, alpha, norm=norm))
        # copy_ inside the timed call keeps every call identical; subtract the
        # copy row of the same group to read the step alone.
    elif impl == "eager":
        out = benchmark((eager_linf_step if norm == "linf" else eager_l2_step),
                        x, x_nat, grad, eps, alpha)
    elif impl == "torchattacks_form":
        if norm == "l2":
            pytest.skip("the eager L2 row already is torchattacks' PGDL2 form")
        out = benchmark(torchattacks_linf_step, x, x_nat, grad, eps, alpha)
    else:
        dst = torch.empty_like(x)
        benchmark(dst.copy_, x)
        return
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6) if norm == "l2" \
        else assert_close(out, expected)
