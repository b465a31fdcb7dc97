"""pytest-benchmark: fused part_moments vs its eager PyTorch composition, forward + backward,
on the CPU and (skipped without one) a GPU's CUDA and Triton kernels. extra_info: bytes
the fused op must move, GB/s at the median, dispatched ops.
Run: python -m pytest benchmarks/test_bench_part_moments.py --benchmark-group-by=group
(``robustops bench --only part_moments [--device cuda]`` prints the side-by-side ratio
table, interleaved in one process; target >= 3x.) Each case first checks that the fused
gradient equals the eager composition's (part_moments_reference under autograd).
"""
import pytest
from robustops.bench.part_moments import SHAPE, cases, moved_bytes


@pytest.mark.parametrize("impl", ["fused fwd+bwd", "eager fwd+bwd"])
@pytest.mark.parametrize("weighted", [True, False], ids=["weighted_bbox", "bbox"])
def test_part_moments(benchmark, device_backend, synced, throughput, baseline_once,
                      assert_matches_reference, weighted, impl):
    device, _ = device_backend
    if impl.startswith("eager"):
        baseline_once()
    fns = cases(SHAPE, weighted, device=device)
    assert_matches_reference(fns["fused fwd+bwd"](), fns["eager fwd+bwd"](),
                             "part_moments fwd+bwd vs eager")
    variant = "weighted-bbox" if weighted else "bbox"
    benchmark.group = f"part_moments {variant} fwd+bwd {'x'.join(map(str, SHAPE))} {device}"
    benchmark.pedantic(synced(fns[impl], device), rounds=10, warmup_rounds=2)
    throughput(fns[impl], moved_bytes(SHAPE, "fwd+bwd"))
