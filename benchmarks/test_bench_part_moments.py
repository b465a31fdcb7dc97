"""pytest-benchmark: fused part_moments vs its eager PyTorch composition, forward + backward.

Run: python -m pytest benchmarks/test_bench_part_moments.py --benchmark-group-by=group
(``python -c "from robustops.bench.part_moments import report; print(report()[0])"``
prints the side-by-side ratio table, interleaved in one process; target >= 3x.)
"""
import pytest

from robustops.bench.part_moments import SHAPE, cases


@pytest.mark.parametrize("impl", ["fused fwd+bwd", "eager fwd+bwd"])
@pytest.mark.parametrize("weighted", [True, False], ids=["weighted_bbox", "bbox"])
def test_part_moments(benchmark, weighted, impl):
    fns = cases(SHAPE, weighted)
    variant = "weighted-bbox" if weighted else "bbox"
    benchmark.group = f"part_moments {variant} fwd+bwd {'x'.join(map(str, SHAPE))}"
    benchmark.pedantic(fns[impl], rounds=10, warmup_rounds=2)
