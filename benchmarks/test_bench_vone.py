"""pytest-benchmark: VOneBlock vs VOneNet's dense formulation; fused vs separate ensemble
front-ends; on the CPU and (skipped without one) a GPU's CUDA and Triton kernels.
extra_info: dispatched ops per call.

Run: python -m pytest benchmarks/test_bench_vone.py --benchmark-group-by=group
(`robustops bench --only vone [--device cuda]` prints the same comparison as a ratio table.)
"""
import pytest

from robustops.bench.vone import CASES, ENSEMBLES, ensemble_cases, front_end_cases


@pytest.mark.parametrize("impl", ["robustops fwd", "dense fwd", "robustops fwd+bwd",
                                  "dense fwd+bwd"])
@pytest.mark.parametrize("size,batch", CASES, ids=lambda v: str(v))
def test_vone_block(benchmark, device_backend, synced, throughput, baseline_once, size, batch,
                    impl):
    device, _ = device_backend
    if impl.startswith("dense"):
        baseline_once()
    cases = front_end_cases(size, batch, device)
    benchmark.group = f"VOneBlock {impl.split()[1]} {batch}x3x{size}x{size} {device}"
    benchmark.pedantic(synced(cases[impl], device), rounds=3, warmup_rounds=1)
    throughput(cases[impl])


@pytest.mark.parametrize("impl", ["fused", "separate"])
@pytest.mark.parametrize("label", list(ENSEMBLES))
def test_ensemble_front_end(benchmark, device_backend, synced, throughput, baseline_once,
                            label, impl):
    device, _ = device_backend
    if impl == "separate":
        baseline_once()
    cases, _ = ensemble_cases(ENSEMBLES[label], device=device)
    benchmark.group = f"3-member V1 front-end: {label} {device}"
    benchmark.pedantic(synced(cases[impl], device), rounds=3, warmup_rounds=1)
    throughput(cases[impl])
