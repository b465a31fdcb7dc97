"""pytest-benchmark: robustops.autoattack (standard) vs torchattacks' suite at the reference
schedule (100-step APGD-CE, APGD-T, FAB-T; Square 5,000 queries) on the same MNIST MLP and
500 images, both on one thread; the robust accuracies are asserted equal within 0.5 points.

Run: python -m pytest benchmarks/test_bench_autoattack.py --benchmark-group-by=group
(`robustops bench --only autoattack` prints the same comparison with the speedup.)
"""
import pytest
import torch

from robustops.attacks import autoattack
from robustops.bench.autoattack import mnist_mlp, torchattacks_reference_suite
from robustops.intra_op_threads import intra_op_threads

N, EPS = 500, 0.1


@pytest.fixture(scope="module")
def model_and_data():
    model, test = mnist_mlp()
    x, y = test.tensors
    return model, x[:N], y[:N]


@pytest.fixture(scope="module")
def accuracies():
    return {}


@pytest.mark.parametrize("impl", ["robustops", "torchattacks"])
def test_autoattack_standard(benchmark, model_and_data, accuracies, impl):
    pytest.importorskip("torchattacks")
    model, x, y = model_and_data
    benchmark.group = f"AutoAttack standard, MNIST MLP, {N} images, Linf {EPS}"
    if impl == "robustops":
        with intra_op_threads(1):  # as torchattacks below: one thread each
            res = benchmark.pedantic(autoattack, args=(model, x, y),
                                     kwargs=dict(eps=EPS, warn=False), rounds=1)
        accuracies[impl] = res.robust_accuracy
    else:
        # One thread: torchattacks' fastest setting on a shared 2-core machine, where a
        # second thread stalls at every small op's join.
        with intra_op_threads(1):
            adv = benchmark.pedantic(torchattacks_reference_suite(model, EPS), args=(x, y),
                                     rounds=1)
        with torch.no_grad():
            accuracies[impl] = float((model(adv).argmax(1) == y).float().mean())
    if len(accuracies) == 2:
        assert abs(accuracies["robustops"] - accuracies["torchattacks"]) <= 0.005 + 1e-9
