"""pytest-benchmark: VOneBlock vs VOneNet's dense formulation; fused vs separate ensemble front-ends.

Run: python -m pytest benchmarks/test_bench_vone.py --benchmark-group-by=group
(`robustops bench --only vone` prints the same comparison as a ratio table.)
"""
import pytest

from robustops.bench.vone import CASES, ENSEMBLES, ensemble_cases, front_end_cases


@pytest.mark.parametrize("impl", ["robustops fwd", "dense fwd", "robustops fwd+bwd",
                                  "dense fwd+bwd"])
@pytest.mark.parametrize("size,batch", CASES, ids=lambda v: str(v))
def test_vone_block(benchmark, size, batch, impl):
    cases = front_end_cases(size, batch)
    benchmark.group = f"VOneBlock {impl.split()[1]} {batch}x3x{size}x{size}"
    benchmark.pedantic(cases[impl], rounds=3, warmup_rounds=1)


@pytest.mark.parametrize("impl", ["fused", "separate"])
@pytest.mark.parametrize("label", list(ENSEMBLES))
def test_ensemble_front_end(benchmark, label, impl):
    cases, _ = ensemble_cases(ENSEMBLES[label])
    benchmark.group = f"3-member V1 front-end: {label}"
    benchmark.pedantic(cases[impl], rounds=3, warmup_rounds=1)
