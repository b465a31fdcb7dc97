"""pytest-benchmark: TENET's inhibition step (k-means + mask), robustops vs the paper's
per-sample numpy procedure, B=64, C=512, 16x16, K=6 (issue 6: >= 20x).

Run: python -m pytest benchmarks/test_bench_tenet.py --benchmark-group-by=group
(`robustops bench --only tenet` prints the same comparison as a ratio table.) The
reference is the tests' oracle, robustops.bench.tenet_reference, imported, not copied.
Each case first checks robustops against it from the same initial medoids (not against
channel_kmeans itself): a grouping as good as the reference's, and the reference's mask
for that grouping.
"""
import numpy as np
import pytest
import torch

from robustops.bench import tenet_reference
from robustops.bench.tenet import CASE, NUM_GROUPS, SEED, make_inputs, robustops_step
from robustops.bench.tenet_reference import kmeans_objective
from robustops.bench.timing import keep_freed_memory
from robustops.ops.channel_kmeans import channel_kmeans, kmeans_init
from robustops.testing import tolerance

keep_freed_memory()


@pytest.fixture(scope="module")
def inputs():
    batch, channels, size = CASE
    f, g = make_inputs(batch, channels, size)
    init = kmeans_init(batch, channels, NUM_GROUPS, seed=SEED).numpy()
    return f, g, init


def _assert_grouping_as_good_as_reference(f, init, assignment):
    """channel_kmeans' grouping (B, C) is as good as the reference's from the same initial
    medoids: its k-means objective is no higher, per sample, within float32's rtol. (In
    float32 a near-tie may round to another, equally good grouping: the criterion of
    tests/ops/test_channel_kmeans.py for float32 maps; float64 maps group identically.)"""
    reference, _, _ = tenet_reference.kmeans_batch(f.numpy(), init)
    ours, theirs = kmeans_objective(f.numpy(), assignment), kmeans_objective(f.numpy(), reference)
    rtol, _ = tolerance(torch.float32)
    assert np.all(ours <= theirs * (1 + rtol)), (ours, theirs)


@pytest.mark.parametrize("impl", ["robustops", "numpy_reference"])
def test_inhibition_step(benchmark, inputs, assert_matches_reference, impl):
    f, g, init = inputs
    benchmark.group = "TENET inhibition step (k-means + mask) 64x512x16x16 K=6"
    # Before timing either side: robustops' step against the reference's, from the same
    # initial medoids: the grouping, and the mask the reference computes for that grouping.
    mask, assignment = robustops_step(f, g)
    _assert_grouping_as_good_as_reference(f, init, assignment.numpy())
    assert_matches_reference(mask, tenet_reference.inhibition_mask(
        f.numpy(), g.numpy(), assignment.numpy(), NUM_GROUPS), "inhibition mask vs reference")
    if impl == "robustops":
        benchmark.pedantic(robustops_step, args=(f, g), rounds=10, warmup_rounds=2)
    else:
        benchmark.pedantic(tenet_reference.inhibition_step, args=(f.numpy(), g.numpy(), init),
                           rounds=3, warmup_rounds=1)


@pytest.mark.parametrize("impl", ["robustops", "numpy_reference"])
def test_channel_kmeans(benchmark, inputs, impl):
    f, _, init = inputs
    benchmark.group = "TENET channel k-means 64x512x16x16 K=6"
    # channel_kmeans(seed=SEED) starts from kmeans_init(seed=SEED): the reference's init.
    ours = channel_kmeans(f, NUM_GROUPS, seed=SEED)
    _assert_grouping_as_good_as_reference(f, init, ours.assignment.numpy())
    if impl == "robustops":
        benchmark.pedantic(channel_kmeans, args=(f, NUM_GROUPS), kwargs=dict(seed=SEED),
                           rounds=10, warmup_rounds=2)
    else:
        benchmark.pedantic(tenet_reference.kmeans_batch, args=(f.numpy(), init), rounds=3,
                           warmup_rounds=1)
