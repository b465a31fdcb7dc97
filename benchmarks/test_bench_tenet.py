"""pytest-benchmark: TENET's inhibition step (k-means + mask), robustops vs the paper's
per-sample numpy procedure, B=64, C=512, 16x16, K=6 (issue 6: >= 20x).

Run: python -m pytest benchmarks/test_bench_tenet.py --benchmark-group-by=group
(`robustops bench --only tenet` prints the same comparison as a ratio table.) The
reference is the tests' oracle, robustops.bench.tenet_reference, imported, not copied.
"""
import numpy as np
import pytest

from robustops.bench import tenet_reference
from robustops.bench.tenet import CASE, NUM_GROUPS, SEED, make_inputs, robustops_step
from robustops.bench.timing import keep_freed_memory
from robustops.ops.channel_kmeans import channel_kmeans, kmeans_init

keep_freed_memory()


@pytest.fixture(scope="module")
def inputs():
    batch, channels, size = CASE
    f, g = make_inputs(batch, channels, size)
    init = kmeans_init(batch, channels, NUM_GROUPS, seed=SEED).numpy()
    return f, g, init


@pytest.mark.parametrize("impl", ["robustops", "numpy_reference"])
def test_inhibition_step(benchmark, inputs, impl):
    f, g, init = inputs
    benchmark.group = "TENET inhibition step (k-means + mask) 64x512x16x16 K=6"
    if impl == "robustops":
        mask, assignment = benchmark.pedantic(robustops_step, args=(f, g), rounds=10,
                                              warmup_rounds=2)
        mask, assignment = mask.numpy(), assignment.numpy()
    else:
        mask, assignment = benchmark.pedantic(tenet_reference.inhibition_step,
                                              args=(f.numpy(), g.numpy(), init), rounds=3,
                                              warmup_rounds=1)
    # Same initial medoids on both sides: the same grouping (up to rounding on near-ties).
    ours = channel_kmeans(f, NUM_GROUPS, seed=SEED).assignment.numpy()
    assert (assignment == ours).mean() > 0.99
    assert mask.shape == tuple(f.shape) and np.isfinite(mask).all()


@pytest.mark.parametrize("impl", ["robustops", "numpy_reference"])
def test_channel_kmeans(benchmark, inputs, impl):
    f, _, init = inputs
    benchmark.group = "TENET channel k-means 64x512x16x16 K=6"
    if impl == "robustops":
        benchmark.pedantic(channel_kmeans, args=(f, NUM_GROUPS), kwargs=dict(seed=SEED),
                           rounds=10, warmup_rounds=2)
    else:
        benchmark.pedantic(tenet_reference.kmeans_batch, args=(f.numpy(), init), rounds=3,
                           warmup_rounds=1)
