"""pytest-benchmark: VOneBlock vs VOneNet's dense formulation; fused vs separate ensemble
front-ends; on the CPU and (skipped without one) a GPU's CUDA and Triton kernels.
extra_info: dispatched ops per call.

Run: python -m pytest benchmarks/test_bench_vone.py --benchmark-group-by=group
(`robustops bench --only vone [--device cuda]` prints the same comparison as a ratio table.)

Each case first checks its result against the formulation it races. The dense rows draw
fresh torch.randn noise per call (as VOneNet does), so the block and the dense formulation
are compared with the block's own fixed noise in the dense one (dense_forward's default),
on the benchmark's geometry, forward and forward + backward.
"""
import pytest
import torch

from robustops.bench.vone import CASES, ENSEMBLES, _fwd_bwd, ensemble_cases, front_end_cases
from robustops.models.vonenet import v1_block_config
from robustops.nn.vone_block import VOneBlock, dense_forward, dense_weights


def _check_against_dense(assert_matches_reference, size, batch, device, backward):
    """The block (noise_mode fixed, VOneNet's preset for `size`) equals VOneNet's dense
    formulation with the same noise; grouped and dense convolutions round differently,
    so the tolerance scales with the outputs."""
    block = VOneBlock(noise_mode="fixed", **v1_block_config(size)).to(device)
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    weights = dense_weights(block)

    def dense(z):
        return dense_forward(block, z, weights=weights)

    # float32 convolutions on a GPU too: cuDNN's default TF32 would round each side to
    # 10 mantissa bits, differently for the grouped and the dense shapes.
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        if backward:
            w = torch.randn(block(x[:1]).shape[1:], generator=torch.Generator().manual_seed(1))
            ours, reference = _fwd_bwd(block, x, w.to(device)), _fwd_bwd(dense, x, w.to(device))
        else:
            ours, reference = block(x), dense(x)
    assert_matches_reference(ours, reference, f"VOneBlock {size} vs dense", scaled=True)


@pytest.mark.parametrize("impl", ["robustops fwd", "dense fwd", "robustops fwd+bwd",
                                  "dense fwd+bwd"])
@pytest.mark.parametrize("size,batch", CASES, ids=lambda v: str(v))
def test_vone_block(benchmark, device_backend, synced, throughput, baseline_once,
                    assert_matches_reference, size, batch, impl):
    device, _ = device_backend
    if impl.startswith("dense"):
        baseline_once()
    _check_against_dense(assert_matches_reference, size, batch, device,
                         backward=impl.endswith("fwd+bwd"))
    cases = front_end_cases(size, batch, device)
    benchmark.group = f"VOneBlock {impl.split()[1]} {batch}x3x{size}x{size} {device}"
    benchmark.pedantic(synced(cases[impl], device), rounds=3, warmup_rounds=1)
    throughput(cases[impl])


@pytest.mark.parametrize("impl", ["fused", "separate"])
@pytest.mark.parametrize("label", list(ENSEMBLES))
def test_ensemble_front_end(benchmark, device_backend, synced, throughput, baseline_once,
                            assert_matches_reference, label, impl):
    device, _ = device_backend
    if impl == "separate":
        baseline_once()
    cases, _ = ensemble_cases(ENSEMBLES[label], device=device)
    # The fused front-end's members' responses equal the separate blocks'.
    assert_matches_reference(cases["fused"](), cases["separate"](), f"{label} fused vs separate")
    benchmark.group = f"3-member V1 front-end: {label} {device}"
    benchmark.pedantic(synced(cases[impl], device), rounds=3, warmup_rounds=1)
    throughput(cases[impl])
