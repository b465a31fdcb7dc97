"""pytest-benchmark: PGD-10 vs torchattacks, and robust-accuracy evaluation with early exit.

Run: python -m pytest benchmarks/test_bench_attacks.py --benchmark-group-by=group
(`robustops bench --only attacks` prints the same comparison as a ratio table.)
"""
import pytest

from robustops.attacks import PGD
from robustops.bench.attacks import quick_mnist_model, small_cifar_batch
from robustops.eval import robust_accuracy


@pytest.mark.parametrize("impl", ["robustops", "torchattacks"])
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_pgd10_small_cnn(benchmark, synced, assert_matches_reference, device, impl):
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y = small_cifar_batch(device=device)
    benchmark.group = f"PGD-10 SmallCNN b128 3x32x32 {device}"
    # Before timing: from the same (deterministic) start and in torchattacks' memory layout,
    # robustops' PGD returns torchattacks' images. (The timed runs start at random points,
    # drawn differently, and channels_last convolutions round differently, which flips
    # the sign of a few near-zero gradient entries.)
    assert_matches_reference(
        PGD(model, eps=8 / 255, alpha=2 / 255, steps=10, random_start=False,
            channels_last=False)(x, y),
        torchattacks.PGD(model, eps=8 / 255, alpha=2 / 255, steps=10, random_start=False)(x, y),
        "PGD-10 vs torchattacks")
    if impl == "robustops":
        atk = PGD(model, eps=8 / 255, alpha=2 / 255, steps=10)
    else:
        atk = torchattacks.PGD(model, eps=8 / 255, alpha=2 / 255, steps=10, random_start=True)
    adv = benchmark.pedantic(synced(atk, device), args=(x, y), rounds=3, warmup_rounds=1)
    assert ((adv - x).abs() <= 8 / 255 + 1e-6).all()


@pytest.fixture(scope="module")
def mnist_model():
    return quick_mnist_model()


@pytest.mark.parametrize("early_exit", [True, False], ids=["early_exit", "full"])
def test_pgd50x3_evaluation(benchmark, mnist_model, early_exit):
    model, test = mnist_model
    x, y = test.tensors
    benchmark.group = "PGD-50 x 3 restarts robust accuracy, 256 MNIST images"
    atk = PGD(model, eps=0.3, alpha=0.01, steps=50, restarts=3, seed=0)
    res = benchmark.pedantic(robust_accuracy, args=(model, (x[:256], y[:256]), [atk]),
                             kwargs=dict(early_exit=early_exit, progress=False), rounds=1)
    reference = robust_accuracy(model, (x[:256], y[:256]), [atk], early_exit=not early_exit,
                                progress=False)
    assert res.worst_case == reference.worst_case
