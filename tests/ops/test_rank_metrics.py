"""rank_metrics: top-k intersection, Kendall tau-b and Spearman rho against numpy / scipy."""
import warnings

import numpy as np
import pytest
import torch

from robustops import backend
from robustops.ops.rank_metrics import (kendall_tau, rank_metrics, rank_metrics_reference,
                                        spearman_rho, topk_intersection)

scipy_stats = pytest.importorskip("scipy.stats")


def _maps(b=6, n=300, ties=False, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    if ties:  # few distinct values: many ties in a, in b and in both
        a = torch.randint(0, 7, (b, n), generator=g).to(dtype)
        bb = (a + torch.randint(-2, 3, (b, n), generator=g)).clamp(0, 6).to(dtype)
        bb[:, ::3] = torch.randint(0, 4, (b, (n + 2) // 3), generator=g).to(dtype)
        return a, bb
    a = torch.rand(b, n, generator=g, dtype=torch.float64)
    return a.to(dtype), (a + 0.5 * torch.rand(b, n, generator=g, dtype=torch.float64)).to(dtype)


def _numpy_topk(a, b, k):
    """The reference of METHODS.md: |TopK(a) n TopK(b)| / k with numpy argsort (no ties)."""
    return np.array([len(np.intersect1d(np.argsort(-a[i])[:k], np.argsort(-b[i])[:k])) / k
                     for i in range(a.shape[0])])


def _assert_scipy(tau, rho, a, b):
    """tau, rho (B,) equal scipy's kendalltau / spearmanr of the rows of a, b to 1e-6."""
    an, bn = a.flatten(1).double().numpy(), b.flatten(1).double().numpy()
    for i in range(an.shape[0]):
        with warnings.catch_warnings():  # scipy warns on constant inputs (NaN, as ours)
            warnings.simplefilter("ignore")
            exp_tau = scipy_stats.kendalltau(an[i], bn[i]).statistic
            exp_rho = scipy_stats.spearmanr(an[i], bn[i]).statistic
        np.testing.assert_allclose(float(tau[i]), exp_tau, rtol=0, atol=1e-6, equal_nan=True)
        np.testing.assert_allclose(float(rho[i]), exp_rho, rtol=0, atol=1e-6, equal_nan=True)


@pytest.fixture(params=["reference", "cpp", "triton"])
def metrics_backend(request):
    if request.param not in backend.available():
        pytest.skip(f"{request.param} not available")
    with backend.use(request.param):
        yield request.param


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("n", [1, 2, 37, 784])
def test_kendall_and_spearman_match_scipy(metrics_backend, ties, n):
    if metrics_backend == "triton" and n > 100 and backend.triton_interpreted():
        pytest.skip("Triton's interpreter runs ~1 ms per program: small maps only")
    a, b = _maps(5, n, ties, seed=n)
    tau, rho = kendall_tau(a, b), spearman_rho(a, b)
    if n < 2:
        assert torch.isnan(tau).all() and torch.isnan(rho).all()
        return
    _assert_scipy(tau, rho, a, b)


def test_constant_map_gives_nan_like_scipy(metrics_backend):
    a = torch.rand(2, 50, dtype=torch.float64)
    b = a.clone()
    b[0] = 0.5
    m = rank_metrics(a, b, 10)
    assert np.isnan(float(m["kendall"][0])) and np.isnan(float(m["spearman"][0]))
    assert float(m["kendall"][1]) == pytest.approx(1.0)
    assert float(m["spearman"][1]) == pytest.approx(1.0)


@pytest.mark.parametrize("k", [1, 17, 100, 300])
def test_topk_intersection_matches_numpy(metrics_backend, k):
    a, b = _maps(7, 300, seed=k)
    got = topk_intersection(a, b, k).numpy()
    np.testing.assert_allclose(got, _numpy_topk(a.numpy(), b.numpy(), k), rtol=0, atol=1e-12)


def test_topk_ties_go_to_the_lower_index(metrics_backend):
    a = torch.tensor([[0.0, 1.0, 1.0, 1.0, 0.5]])
    b = torch.tensor([[0.0, 1.0, 0.0, 0.0, 0.9]])  # top-2: {1, 4}
    # a's top-2 among the tied 1.0s: indices 1 and 2 -> intersection {1}.
    assert float(topk_intersection(a, b, 2)) == 0.5


def test_signed_zeros_tie_and_negative_values(metrics_backend):
    a = torch.tensor([[-0.0, 0.0, -1.5, 2.0, -3.0, 0.0]], dtype=torch.float64)
    b = torch.tensor([[1.0, -2.0, 0.25, 0.25, -0.0, 3.0]], dtype=torch.float64)
    tau, rho = kendall_tau(a, b), spearman_rho(a, b)
    assert float(tau[0]) == pytest.approx(scipy_stats.kendalltau(a[0], b[0]).statistic, abs=1e-12)
    assert float(rho[0]) == pytest.approx(scipy_stats.spearmanr(a[0], b[0]).statistic, abs=1e-12)


def test_cpp_matches_reference_on_images():
    if "cpp" not in backend.available():
        pytest.skip("cpp not available")
    a, b = _maps(4, 128 * 128, seed=3)
    a[:, :500] = 0.25  # a block of ties
    with backend.use("cpp"):
        got = rank_metrics(a.view(4, 1, 128, 128), b.view(4, 1, 128, 128), 1000)
    ref = rank_metrics_reference(a.double(), b.double(), 1000)
    for j, key in enumerate(("topk", "kendall", "spearman")):
        torch.testing.assert_close(got[key], ref[:, j], rtol=0, atol=1e-12)


@pytest.mark.parametrize("n", [2, 37, 64, 65, 200])
def test_cpp_short_and_long_rows_match_reference(n):
    """Rows of <= 64 values take the sort-free pair-count path, longer ones the radix
    sorts: both agree with the reference, ties and signed zeros included."""
    if "cpp" not in backend.available():
        pytest.skip("cpp not available")
    a, b = _maps(6, n, ties=True, seed=n)
    a[0, : min(n, 3)] = torch.tensor([-0.0, 0.0, -1.0], dtype=a.dtype)[: min(n, 3)]
    k = max(1, n // 3)
    with backend.use("cpp"):
        got = rank_metrics(a, b, k)
    ref = rank_metrics_reference(a.double(), b.double(), k)
    for j, key in enumerate(("topk", "kendall", "spearman")):
        torch.testing.assert_close(got[key], ref[:, j], rtol=0, atol=1e-12, equal_nan=True)


def test_dtypes_and_shapes(metrics_backend):
    a, b = _maps(3, 64, ties=True, seed=5)
    m32 = rank_metrics(a.view(3, 8, 8), b.view(3, 8, 8), 5)
    m64 = rank_metrics(a.double(), b.double(), 5)
    mint = rank_metrics(a.long(), b.long(), 5)
    for key in m32:
        assert m32[key].dtype == torch.float64 and m32[key].shape == (3,)
        torch.testing.assert_close(m32[key], m64[key])
        torch.testing.assert_close(mint[key], m64[key])
    assert rank_metrics(a[:0], b[:0], 5)["kendall"].shape == (0,)


@pytest.mark.parametrize("case", [
    ("1-D", dict(a=torch.rand(10), b=torch.rand(10)), r"\(B, \*\) maps"),
    ("shape", dict(b=torch.rand(2, 9)), "must have one shape"),
    ("k zero", dict(k=0), r"k must be an int in \[1, 10\]"),
    ("k too big", dict(k=11), r"k must be an int in \[1, 10\]"),
    ("k float", dict(k=2.0), r"k must be an int in \[1, \d+\] \(the map size\), got 2.0 \(float\)",
     TypeError),
    ("complex", dict(a=torch.rand(2, 10, dtype=torch.complex64)), "real-valued"),
    ("nan", dict(a=torch.tensor([[0.1] * 9 + [float("nan")]] * 2)), "NaN"),
    ("empty maps", dict(a=torch.rand(2, 0), b=torch.rand(2, 0)), "empty"),
], ids=lambda c: c[0])
def test_bad_input_raises_clear_error(metrics_backend, case):
    _, override, match, *error = case
    args = dict(a=torch.rand(2, 10), b=torch.rand(2, 10), k=3)
    args.update(override)
    with pytest.raises(error[0] if error else ValueError, match=match):
        rank_metrics(args["a"], args["b"], args["k"])


# ----------------------------------------------------------------------------- op contract


@pytest.mark.parametrize("requires_grad", [False, True])
def test_opcheck(requires_grad):
    a, b = _maps(3, 64, ties=True, seed=7)
    op = torch.ops.robustops.rank_metrics.default
    torch.library.opcheck(op, (a.view(3, 8, 8).clone().requires_grad_(requires_grad),
                               b.view(3, 8, 8), 5))
    torch.library.opcheck(op, (a.double(), b.long(), 9))  # mixed dtypes: computed in float64
    torch.library.opcheck(op, (a[:0], b[:0], 5))          # empty batch


def test_op_is_the_public_function():
    # torch.ops.robustops.rank_metrics returns (topk, kendall, spearman): the public
    # function's dict, one op call; maps that require grad leave no graph behind.
    a, b = _maps(4, 50, ties=True, seed=8)
    a.requires_grad_(True)
    topk, tau, rho = torch.ops.robustops.rank_metrics(a, b, 7)
    with backend.use("cpp"):
        want = rank_metrics(a, b, 7)
    for got, key in ((topk, "topk"), (tau, "kendall"), (rho, "spearman")):
        assert torch.equal(got, want[key]) and got.dtype == torch.float64
        assert not got.requires_grad
    with pytest.raises(ValueError, match="rank_metrics: the maps contain NaN"):
        torch.ops.robustops.rank_metrics(a.detach().clone().fill_(float("nan")), b, 7)
    with pytest.raises(ValueError, match=r"rank_metrics: k must be an int in \[1, 50\]"):
        torch.ops.robustops.rank_metrics(a, b, 51)


def test_column_functions_name_themselves():
    a = torch.tensor([[0.1] * 9 + [float("nan")]] * 2)
    b = torch.rand(2, 10)
    for fn in (kendall_tau, spearman_rho):
        with pytest.raises(ValueError, match=f"{fn.__name__}: the maps contain NaN"):
            fn(a, b)
    with pytest.raises(ValueError, match=r"topk_intersection: k must be an int in \[1, 10\]"):
        topk_intersection(b, b, 11)


def test_no_cuda_kernel_and_no_cuda_backend():
    # There is no hand-written CUDA kernel: no CUDA registration and no backend called
    # "cuda" (on a GPU, auto runs the Triton kernels or the reference).
    assert torch._C._dispatch_has_kernel_for_dispatch_key("robustops::rank_metrics", "CPU")
    assert not torch._C._dispatch_has_kernel_for_dispatch_key("robustops::rank_metrics", "CUDA")
    with backend.use("cuda"), pytest.raises(RuntimeError, match="no 'cuda' backend"):
        rank_metrics(torch.rand(2, 10), torch.rand(2, 10), 3)


def test_compiles_fullgraph():
    torch._dynamo.reset()
    a, b = _maps(3, 64, ties=True, seed=9)

    def metrics(x, y):
        m = rank_metrics(x, y, 5)
        return m["kendall"] + m["spearman"] + m["topk"]

    compiled = torch.compile(metrics, fullgraph=True)
    torch.testing.assert_close(compiled(a, b), metrics(a, b))


@pytest.mark.parametrize("blocks", ["pinned", "small"])
@pytest.mark.parametrize("shape", [(3, 8, 8), (3, 5, 7)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_triton_matches_reference_and_scipy_with_ties(shape, dtype, blocks, monkeypatch):
    """Integer-valued maps (ties in a, in b, in both), a constant row -> NaN. "small"
    blocks split each row over several rank programs, Kendall tiles and loop steps."""
    if "triton" not in backend.available():
        pytest.skip("triton not available (needs TRITON_INTERPRET=1 on CPU)")
    if blocks == "small":
        from robustops.triton import rank_metrics as tri
        for name, size in (("BLOCK", 16), ("BLOCK_I", 16), ("BLOCK_J", 32)):
            monkeypatch.setattr(tri, name, size)
    g = torch.Generator().manual_seed(shape[2])
    a = torch.randint(0, 6, shape, generator=g).to(dtype)
    b = (a + torch.randint(-2, 3, shape, generator=g)).clamp(0, 5).to(dtype)
    b[1] = 3  # constant map: tau and rho undefined
    a.view(shape[0], -1)[2, :3] = torch.tensor([-0.0, 0.0, -1.0], dtype=dtype)  # -0.0 ties +0.0
    k = 9
    with backend.use("triton"):
        got = rank_metrics(a, b, k)
    ref = rank_metrics_reference(a.flatten(1).double(), b.flatten(1).double(), k)
    for j, key in enumerate(("topk", "kendall", "spearman")):
        torch.testing.assert_close(got[key], ref[:, j], rtol=0, atol=1e-12, equal_nan=True)
    _assert_scipy(got["kendall"], got["spearman"], a, b)
    assert np.isnan(float(got["kendall"][1])) and np.isnan(float(got["spearman"][1]))


@pytest.mark.cuda
@pytest.mark.parametrize("be", ["auto", "triton", "reference"])
def test_cuda_backends_match_reference_on_device(be):
    if be != "reference" and backend.triton_interpreted():
        pytest.skip("Triton runs interpreted in this session (auto would pick it)")
    if be == "triton" and "triton" not in backend.available():
        pytest.skip("triton not available")
    a, b = _maps(8, 128 * 128, ties=True, seed=6)
    with backend.use(be):
        got = rank_metrics(a.cuda(), b.cuda(), 1000)
    assert got["kendall"].device.type == "cuda"
    ref = rank_metrics_reference(a.double(), b.double(), 1000)
    for j, key in enumerate(("topk", "kendall", "spearman")):
        torch.testing.assert_close(got[key].cpu(), ref[:, j], rtol=0, atol=1e-9)
