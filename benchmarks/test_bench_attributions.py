"""pytest-benchmark: robust-attribution metrics, integrated gradients and the fused regularisers.

Run: python -m pytest benchmarks/test_bench_attributions.py --benchmark-group-by=group
(`python -m robustops.bench.attributions` prints the same comparisons as a ratio table,
with the peak memory of each IG variant measured in its own process.)
Each case first checks that robustops computes what the library it races computes
(scipy's per-pair metrics, captum's unchunked IG, the eager composition).
"""
import pytest
import torch

from robustops.bench.attributions import (IG_CASES, METRIC_CASES, PAIRS, fused_op_cases,
                                          ig_cases, metric_cases)


@pytest.mark.parametrize("impl", ["robustops", "scipy"])
@pytest.mark.parametrize("side,k", METRIC_CASES, ids=lambda v: str(v))
def test_rank_metrics(benchmark, assert_matches_reference, side, k, impl):
    pytest.importorskip("scipy")
    benchmark.group = f"top-k + Kendall + Spearman, {PAIRS} pairs {side}x{side}, k={k}"
    cases = metric_cases(side, k)
    ours = cases["robustops"]()
    # scipy_loop's columns: top-k intersection, Kendall tau-b, Spearman rho.
    assert_matches_reference(torch.stack([ours[m] for m in ("topk", "kendall", "spearman")], 1),
                             cases["scipy"](), "rank_metrics vs scipy")
    benchmark.pedantic(cases[impl], rounds=3, warmup_rounds=1)


@pytest.mark.parametrize("impl", ["robustops", "captum", "captum_chunked"])
@pytest.mark.parametrize("case", IG_CASES, ids=lambda c: c[0])
def test_integrated_gradients(benchmark, assert_matches_reference, case, impl):
    pytest.importorskip("captum")
    label, batch, side, ch, steps, ibs = case
    benchmark.group = f"IG {label} b{batch} {steps} steps (ibs {ibs})"
    cases = ig_cases(batch, side, ch, steps, ibs)
    reference = cases["captum"]()  # captum's own default: unchunked
    for name in {impl, "robustops"} - {"captum"}:
        assert_matches_reference(cases[name](), reference, f"IG {name} vs captum")
    benchmark.pedantic(cases[impl], rounds=3, warmup_rounds=1)


@pytest.mark.parametrize("impl", ["robustops", "eager"])
@pytest.mark.parametrize("label", list(fused_op_cases()))
def test_fused_regulariser_ops(benchmark, device_backend, synced, throughput, baseline_once,
                               assert_matches_reference, label, impl):
    # On the CPU and (skipped without one) a GPU's CUDA and Triton kernels; extra_info:
    # dispatched ops per call.
    device, _ = device_backend
    if impl == "eager":
        baseline_once()
    cases = fused_op_cases(device)[label]
    fn = cases[impl]
    # Forward + backward: the gradients of the fused op equal the eager composition's.
    assert_matches_reference(cases["robustops"](), cases["eager"](), f"{label} vs eager")
    benchmark.group = f"{label} fwd+bwd {device}"
    benchmark.pedantic(synced(fn, device), rounds=10, warmup_rounds=2)
    throughput(fn)
