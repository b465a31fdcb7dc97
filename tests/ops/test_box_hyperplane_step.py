"""box_hyperplane_step (FAB's projection): reference vs torchattacks' FAB projections, cpp
and triton (interpreter) vs the reference, Newton vs sort paths, NaN rows, op contract,
bad inputs."""
import sys

import pytest
import torch

from robustops import backend
from robustops.ops.box_hyperplane_step import box_hyperplane_step, box_hyperplane_step_reference
from robustops.testing import assert_close



def _op():
    """torch.ops.robustops.box_hyperplane_step, looked up by the tests that need the op library
    (the reference tests run without it)."""
    if not backend.native_ops_loaded():
        pytest.skip("the op library (robustops/_ops*.so) is not built")
    return torch.ops.robustops.box_hyperplane_step.default
_module = sys.modules["robustops.ops.box_hyperplane_step"]


def _rows(n=40, d=64, seed=0, dtype=torch.float32, lo=0.0, hi=1.0):
    """Random rows in the box: some coordinates at its edges, some with w = 0, and offsets
    b through a random point of the box, except every third row's hyperplane passes above
    the box and every third below (it misses the box)."""
    g = torch.Generator().manual_seed(seed)
    t = lo + (hi - lo) * torch.rand(n, d, generator=g, dtype=torch.float64)
    t[:, : d // 8] = lo
    t[:, d // 8: d // 4] = hi
    w = torch.randn(n, d, generator=g, dtype=torch.float64)
    w[:, 1::7] = 0  # coordinates the hyperplane ignores
    inside = lo + (hi - lo) * torch.rand(n, d, generator=g, dtype=torch.float64)
    b = (w * inside).sum(1)
    top, bottom = _reach(w, lo, hi)
    b[::3] = top[::3] + torch.rand(len(b[::3]), generator=g, dtype=torch.float64)
    b[1::3] = bottom[1::3] - torch.rand(len(b[1::3]), generator=g, dtype=torch.float64)
    return t.to(dtype), w.to(dtype), b.to(dtype)


def _reach(w, lo, hi):
    """(max, min) of w.z over the box [lo, hi]^D, per row."""
    return (torch.where(w > 0, w * hi, w * lo).sum(1), torch.where(w > 0, w * lo, w * hi).sum(1))


def _newton_trap_rows(norm, n=6, traps=12, reservoir=8, seed=0, dtype=torch.float64):
    """(t, w, b): n rows on which Newton's steps saturate one new coordinate each, so
    they need traps steps after the first (more than any backend takes before its
    fallback).

    Built forward (lo = 0, w > 0: coordinate i's room is t_i): the traps' slopes halve
    one to the next (so each step's deficit stays comparable to the last: a well-
    conditioned row), and each trap's kink lies between the two Newton iterates before
    it: saturated at the later, not at the earlier. `reservoir` coordinates with kink 1
    and small slopes stay unsaturated. L-inf: slope w_i, kink t_i; L2: slope w_i^2, kink
    t_i / w_i."""
    g = torch.Generator().manual_seed(seed)
    d = traps + reservoir
    t = torch.empty(n, d, dtype=torch.float64)
    w = torch.empty(n, d, dtype=torch.float64)
    b = torch.empty(n, dtype=torch.float64)
    for r in range(n):
        slope = [0.5 ** j for j in range(traps)] + [0.5 ** traps / reservoir] * reservoir
        kink = [0.0] * traps + [1.0] * reservoir
        c = (0.2 + 0.1 * torch.rand((), generator=g, dtype=torch.float64).item()) * sum(slope)
        gained, left, before = 0.0, sum(slope), 0.0
        lam = c / left
        for j in range(traps):
            kink[j] = 0.5 * (before + lam)
            gained, left, before = gained + slope[j] * kink[j], left - slope[j], lam
            lam = (c - gained) / left
        assert lam < 1  # the root is inside the box
        cols = torch.randperm(d, generator=g)
        sl, kk = torch.tensor(slope, dtype=torch.float64), torch.tensor(kink, dtype=torch.float64)
        w[r, cols] = sl if norm == "linf" else sl.sqrt()
        t[r, cols] = kk if norm == "linf" else kk * sl.sqrt()
        b[r] = (w[r] * t[r]).sum() - c
    return t.to(dtype), w.to(dtype), b.to(dtype)


def _assert_steps_match(t, w, b, norm, lo=0.0, hi=1.0, exact=False):
    """The public function (backend selected by the caller) equals the reference.

    exact: the reference computed in float64 on the same values (for rows where the
    float32 reference's own rounding is amplified: its slope left after many kinks is a
    difference of float32 sums; the kernels sum in float64)."""
    got = box_hyperplane_step(t, w, b, norm, lo, hi)
    if exact:
        ref = box_hyperplane_step_reference(t.double(), w.double(), b.double(), norm, lo, hi)
        ref = ref.to(got.dtype)
    else:
        ref = box_hyperplane_step_reference(t, w, b, norm, lo, hi)
    assert got.dtype == ref.dtype and got.shape == t.shape
    assert_close(got, ref)
    return got


# ----------------------------------------------------------------------------- the oracle


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_reference_matches_torchattacks_fab_projection(norm):
    fab = pytest.importorskip("torchattacks.attacks.fab")
    project = fab.projection_linf if norm == "linf" else fab.projection_l2
    for d in (5, 64, 784):
        t, w, b = _rows(96, d, seed=d)
        ref = project(t, w, b)
        # newton: Newton steps first, the sort for the rows they leave unsettled (1: most
        # rows, 4: few or none); None: every row sorted.
        for newton in (None, 1, 4):
            ours = box_hyperplane_step_reference(t, w, b, norm, newton=newton)
            torch.testing.assert_close(ours, ref, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_step_lands_on_the_plane_inside_the_box(norm):
    t, w, b = _rows(64, 50, seed=1, dtype=torch.float64, lo=-0.5, hi=2.0)
    d = box_hyperplane_step(t, w, b, norm, -0.5, 2.0)
    z = t + d
    assert float(z.min()) >= -0.5 - 1e-12 and float(z.max()) <= 2.0 + 1e-12
    top, bottom = _reach(w, -0.5, 2.0)
    hits = (b >= bottom) & (b <= top)
    assert 0 < int(hits.sum()) < len(b)  # both kinds of rows are tested
    torch.testing.assert_close((w * z).sum(1)[hits], b[hits], rtol=0, atol=1e-9)
    # A miss: every moving coordinate at the box edge nearest to the plane.
    miss = ~hits
    towards_lo = (w * ((w * t).sum(1) - b)[:, None]) > 0
    edge = torch.where(towards_lo, torch.full_like(t, -0.5), torch.full_like(t, 2.0))
    moved = (w != 0)
    torch.testing.assert_close(z[miss][moved[miss]], edge[miss][moved[miss]], rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- kernels


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_cpp_matches_reference(kernel_backend, norm, dtype):
    sizes = [(3, 5), (17, 33), (40, 784)] if kernel_backend == "cpp" else [(3, 5), (5, 33)]
    for n, d in sizes:
        _assert_steps_match(*_rows(n, d, seed=n + d, dtype=dtype), norm)
    _assert_steps_match(*_rows(9, 20, seed=3, dtype=dtype, lo=-1.0, hi=0.25), norm, -1.0, 0.25)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_rows_past_the_newton_steps_take_the_fallback(kernel_backend, norm):
    t, w, b = _newton_trap_rows(norm)
    c = (w * t).sum(1) - b
    slope, kink = (w, t) if norm == "linf" else (w * w, t / w)
    for steps, settled_rows in ((8, 0), (11, 0), (12, len(b))):  # the rows are as built
        _, settled = _module._newton_lambda(c, kink, slope, w * t, steps)
        assert int(settled.sum()) == settled_rows, steps
    got = _assert_steps_match(t, w, b, norm)
    torch.testing.assert_close((w * (t + got)).sum(1), b, rtol=0, atol=1e-12)
    _assert_steps_match(t.float(), w.float(), b.float(), norm, exact=True)


@pytest.mark.parametrize("blocks", ["pinned", "small"])
def test_triton_blocks_and_bisection(blocks, monkeypatch):
    """Rows longer than a block; NEWTON_STEPS 1 sends most rows to the bisection."""
    if "triton" not in backend.available():
        pytest.skip("triton not available (needs TRITON_INTERPRET=1 on CPU)")
    from robustops.triton import box_hyperplane_step as tri
    if blocks == "small":
        monkeypatch.setattr(tri, "BLOCK", 16)
        monkeypatch.setattr(tri, "NEWTON_STEPS", 1)
    with backend.use("triton"):
        for norm in ("linf", "l2"):
            _assert_steps_match(*_rows(4, 37, seed=5), norm)
            _assert_steps_match(*_newton_trap_rows(norm, n=2), norm)


def test_layouts_and_mixed_dtypes(kernel_backend):
    t, w, b = _rows(8, 30, seed=7)
    want = box_hyperplane_step_reference(t, w, b, "linf")
    tt = t.t().contiguous().t()  # column-major
    assert not tt.is_contiguous()
    assert_close(box_hyperplane_step(tt, w[:, :], b, "linf"), want)
    wide = torch.cat([w, w], 1)[:, ::2]  # strided view
    assert_close(box_hyperplane_step(t, wide, b, "linf"),
                 box_hyperplane_step_reference(t, wide, b, "linf"))
    got = box_hyperplane_step(t.double(), w, b.half(), "l2")  # float64 wins, half upcast
    assert got.dtype == torch.float64
    assert_close(got, box_hyperplane_step_reference(t.double(), w, b.half(), "l2"))
    assert box_hyperplane_step(t.half(), w.half(), b.half()).dtype == torch.float32
    assert box_hyperplane_step(t[:0], w[:0], b[:0]).shape == (0, 30)
    assert box_hyperplane_step(t[:, :0], w[:, :0], b).shape == (8, 0)


def test_non_finite_rows_are_nan_and_alone(kernel_or_reference):
    t, w, b = _rows(5, 12, seed=8)
    w[1, 3] = float("nan")
    t[2, 0] = float("inf")
    b[3] = float("-inf")
    got = box_hyperplane_step(t, w, b, "linf")
    assert got[1:4].isnan().all()
    keep = [0, 4]
    assert_close(got[keep], box_hyperplane_step_reference(t[keep], w[keep], b[keep], "linf"))


# ----------------------------------------------------------------------------- op contract


def test_opcheck():
    OP = _op()
    t, w, b = _rows(6, 20, seed=9)
    torch.library.opcheck(OP, (t, w, b, "linf", 0.0, 1.0))
    torch.library.opcheck(OP, (t.double(), w, b, "l2", -1.0, 2.0))
    torch.library.opcheck(OP, (t.requires_grad_(True), w, b, "l2", 0.0, 1.0))
    torch.library.opcheck(OP, (t[:0].detach(), w[:0], b[:0], "linf", 0.0, 1.0))


def test_op_is_the_public_function_and_has_no_gradient():
    OP = _op()
    t, w, b = _rows(6, 20, seed=10)
    t.requires_grad_(True)
    got = OP(t, w, b, "linf", 0.0, 1.0)
    assert not got.requires_grad
    with backend.use("cpp"):
        assert torch.equal(got, box_hyperplane_step(t, w, b))
    with pytest.raises(ValueError, match="box_hyperplane_step: norm must be 'linf' or 'l2'"):
        OP(t, w, b, "l1", 0.0, 1.0)


def test_no_cuda_kernel_and_no_cuda_backend():
    assert torch._C._dispatch_has_kernel_for_dispatch_key("robustops::box_hyperplane_step", "CPU")
    assert not torch._C._dispatch_has_kernel_for_dispatch_key("robustops::box_hyperplane_step",
                                                              "CUDA")
    with backend.use("cuda"), pytest.raises(RuntimeError, match="no 'cuda' backend"):
        box_hyperplane_step(*_rows(2, 5))


def test_compiles_fullgraph():
    torch._dynamo.reset()
    t, w, b = _rows(4, 16, seed=11)

    def step(t, w, b):
        return t + box_hyperplane_step(t, w, b, "l2")

    torch.testing.assert_close(torch.compile(step, fullgraph=True)(t, w, b), step(t, w, b))


@pytest.mark.parametrize("case", [
    ("int t", dict(t=torch.zeros(3, 4, dtype=torch.int64)), "t must be a floating-point"),
    ("1-D t", dict(t=torch.rand(4), w=torch.rand(4)), r"t must be \(N, D\) rows"),
    ("w shape", dict(w=torch.rand(3, 5)), r"w has shape \(3, 5\) but t has \(3, 4\)"),
    ("b shape", dict(b=torch.rand(3, 1)), r"b must be \(N,\) = \(3,\)"),
    ("norm", dict(norm="l1"), "norm must be 'linf' or 'l2'"),
    ("lo > hi", dict(lo=1.0, hi=0.0), r"the box \[lo, hi\] must be finite with lo <= hi"),
    ("inf hi", dict(hi=float("inf")), r"the box \[lo, hi\] must be finite"),
    ("str lo", dict(lo="0"), "lo must be", TypeError),
    ("list w", dict(w=[[0.0] * 4] * 3), "w must be a torch.Tensor", TypeError),
    ("meta b", dict(b=torch.rand(3, device="meta")), "b is on meta but t is on cpu"),
], ids=lambda c: c[0])
def test_bad_input_raises_clear_error(kernel_or_reference, case):
    _, override, match, *error = case
    args = dict(t=torch.rand(3, 4), w=torch.randn(3, 4), b=torch.rand(3), norm="linf",
                lo=0.0, hi=1.0)
    args.update(override)
    with pytest.raises(error[0] if error else ValueError, match=f"box_hyperplane_step: {match}"):
        box_hyperplane_step(**args)


@pytest.fixture(params=["reference", "cpp", "triton"])
def kernel_or_reference(request):
    if request.param not in backend.available():
        pytest.skip(f"{request.param} not available")
    with backend.use(request.param):
        yield request.param


@pytest.mark.cuda
@pytest.mark.parametrize("be", ["auto", "triton", "reference"])
def test_cuda_backends_match_cpp(be):
    if be != "reference" and backend.triton_interpreted():
        pytest.skip("Triton runs interpreted in this session (auto would pick it)")
    if be == "triton" and "triton" not in backend.available():
        pytest.skip("triton not available")
    for norm in ("linf", "l2"):
        for t, w, b in (_rows(64, 784, seed=12), _newton_trap_rows(norm)):
            with backend.use(be):
                got = box_hyperplane_step(t.cuda(), w.cuda(), b.cuda(), norm)
            assert got.device.type == "cuda"
            with backend.use("cpp"):
                want = box_hyperplane_step(t, w, b, norm)
            assert_close(got.cpu(), want)
