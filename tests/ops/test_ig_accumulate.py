"""ig_accumulate: the fused IG accumulation; backends vs the reference; the op contract."""
import pytest
import torch

from robustops import backend
from robustops.ops.ig_accumulate import (ig_accumulate, ig_accumulate_backward_reference,
                                         ig_accumulate_reference, path_weights)
from robustops.testing import assert_close


def _inputs(steps=5, shape=(3, 2, 7, 9), dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    mk = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).to(dtype)  # noqa: E731
    return mk(steps, *shape), mk(*shape), mk(*shape)


def _weights(steps, dtype, kind):
    if kind == "mean":
        return None
    if kind == "float":
        return 0.25
    return torch.linspace(0.1, 1.0, steps, dtype=torch.float64)


# ----------------------------------------------------------------------------- reference


def test_reference_is_the_formula():
    g, x, a = _inputs()
    w = torch.tensor([0.1, 0.2, 0.3, 0.25, 0.15], dtype=torch.float64)
    expected = (x - a) * sum(w[s] * g[s] for s in range(5))
    assert_close(ig_accumulate_reference(g, x, a, w), expected)
    # Default weights: the mean of the path gradients ((x - a) / m * sum).
    assert_close(ig_accumulate(g, x, a), (x - a) * g.mean(0))
    assert_close(ig_accumulate(g, x), x * g.mean(0))  # zero baseline


def test_reference_backward_matches_autograd():
    g, x, a = (t.requires_grad_() for t in _inputs(seed=1))
    w = path_weights(None, 5, torch.float64, "cpu")
    go = torch.randn(x.shape, dtype=torch.float64)
    auto = torch.autograd.grad(ig_accumulate_reference(g, x, a, w), (g, x, a), go)
    acc = (w[:, None, None, None, None] * g.detach()).sum(0)
    gp, gx = ig_accumulate_backward_reference(go, torch.zeros_like(acc), acc, x.detach(),
                                              a.detach(), w)
    for got, exp in zip((gp, gx, -gx), auto):
        assert_close(got, exp)


# ----------------------------------------------------------------------------- backends


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["mean", "float", "tensor"])
@pytest.mark.parametrize("shape", [(3, 2, 7, 9), (1, 1029), (5, 1, 1, 1)])
def test_backend_matches_reference(kernel_backend, dtype, kind, shape):
    # (1, 1029): more than one Triton block and than one CPU accumulator block.
    g, x, a = _inputs(4, shape, dtype, seed=2)
    w = _weights(4, dtype, kind)
    out = ig_accumulate(g, x, a, weights=w)
    with backend.use("reference"):
        ref = ig_accumulate(g, x, a, weights=w)
    assert out.dtype == dtype and out.shape == x.shape
    assert_close(out, ref, kernel_backend)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_backend_backward_matches_reference(kernel_backend, dtype):
    g, x, a = _inputs(6, (2, 3, 5, 5), dtype, seed=3)
    leaves = [t.clone().requires_grad_() for t in (g, x, a)]
    go = torch.randn(x.shape, dtype=dtype).transpose(2, 3).contiguous().transpose(2, 3)
    ours = torch.autograd.grad(ig_accumulate(*leaves), leaves, go)
    with backend.use("reference"):
        ref = torch.autograd.grad(ig_accumulate(*leaves), leaves, go)
    for o, r in zip(ours, ref):
        assert_close(o, r, kernel_backend)


def test_default_and_broadcast_baseline_gradients(kernel_backend):
    # None (zeros) and a (1, *) baseline: the op broadcasts it and sums its gradient back.
    g, x, a = _inputs(3, (2, 3, 4), torch.float64, seed=11)
    for base in (None, a[:1]):
        leaves = [t.clone().requires_grad_() for t in (g, x)]
        extra = [] if base is None else [base.clone().requires_grad_()]
        ours = torch.autograd.grad(ig_accumulate(*leaves, *extra).sum(), leaves + extra)
        with backend.use("reference"):
            ref = torch.autograd.grad(ig_accumulate(*leaves, *extra).sum(), leaves + extra)
        for o, r in zip(ours, ref):
            assert o.shape == r.shape
            assert_close(o, r, kernel_backend)


def test_layouts_channels_last_and_strided(kernel_backend):
    g, x, a = _inputs(3, (2, 3, 6, 5), torch.float32, seed=4)
    ref = ig_accumulate_reference(g, x, a, path_weights(None, 3, x.dtype, "cpu"))
    # channels_last everywhere: runs in place and keeps the layout.
    gc = g.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
    xc, ac = (t.contiguous(memory_format=torch.channels_last) for t in (x, a))
    out = ig_accumulate(gc, xc, ac)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert_close(out, ref)
    # Mixed / strided operands: copied, same values.
    assert_close(ig_accumulate(g.transpose(3, 4).contiguous().transpose(3, 4), x, ac), ref)
    assert_close(ig_accumulate(g, x, a[:1].expand_as(a)),
                 ig_accumulate_reference(g, x, a[:1].expand_as(a).contiguous(),
                                         path_weights(None, 3, x.dtype, "cpu")))


def test_backward_saves_acc_not_the_path_gradients():
    # The (S, B, *) path gradients are not saved for backward: only (B, *) tensors are.
    g, x, a = (t.requires_grad_() for t in _inputs(8, (2, 3, 4), torch.float32, seed=10))
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.shape) or t,
                                                  lambda t: t):
        out = ig_accumulate(g, x, a)
    assert saved and all(s != g.shape for s in saved)
    gp, _, _ = torch.autograd.grad(out.sum(), (g, x, a))
    assert gp.shape == g.shape


def test_half_and_bfloat16_compute_in_float(kernel_backend):
    g, x, a = _inputs(3, (2, 40), torch.float32, seed=5)
    for dt in (torch.float16, torch.bfloat16):
        out = ig_accumulate(g.to(dt), x.to(dt), a.to(dt))
        ref = ig_accumulate_reference(g.to(dt), x.to(dt), a.to(dt),
                                      path_weights(None, 3, dt, "cpu"))
        assert out.dtype == dt
        assert_close(out, ref)


def test_empty_batch(kernel_backend):
    g, x, a = _inputs(3, (0, 4), torch.float32)
    assert ig_accumulate(g, x, a).shape == (0, 4)


@pytest.mark.parametrize("be", ["reference", "cpp", "triton"])
def test_gradcheck_and_gradgradcheck_fp64(be):
    if be not in backend.available():
        pytest.skip(f"{be} not available")
    g, x, a = (t.requires_grad_() for t in _inputs(3, (2, 5), seed=6))
    w = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    fn = lambda g, x, a: ig_accumulate(g, x, a, weights=w)  # noqa: E731
    with backend.use(be):
        assert torch.autograd.gradcheck(fn, (g, x, a), fast_mode=be == "triton")
        # The backward op is differentiable again (second order through a loss).
        assert torch.autograd.gradgradcheck(fn, (g, x, a), fast_mode=be == "triton")


# ----------------------------------------------------------------------------- op contract


@pytest.mark.parametrize("requires_grad", [False, True])
def test_opcheck(requires_grad):
    g, x, a = (t.requires_grad_(requires_grad) for t in _inputs(3, (2, 3, 4), seed=7))
    w = path_weights(None, 3, x.dtype, "cpu")
    torch.library.opcheck(torch.ops.robustops.ig_accumulate.default, (g, x, a, w))
    # The defaults (zero baseline, weights 1/S) and a broadcast baseline.
    torch.library.opcheck(torch.ops.robustops.ig_accumulate.default, (g, x, None, None))
    a1 = a[:1].detach().clone().requires_grad_(requires_grad)
    torch.library.opcheck(torch.ops.robustops.ig_accumulate.default, (g, x, a1, None))
    # What autograd runs: the same with acc as a second output.
    torch.library.opcheck(torch.ops.robustops.ig_accumulate_with_acc.default, (g, x, a, w))
    torch.library.opcheck(torch.ops.robustops.ig_accumulate_with_acc.default, (g, x, None, None))
    go, ga, acc = (torch.randn(x.shape, dtype=x.dtype).requires_grad_(requires_grad)
                   for _ in range(3))
    torch.library.opcheck(torch.ops.robustops.ig_accumulate_backward.default,
                          (go, ga, acc, x, a, w))


def test_compiles_fullgraph():
    torch._dynamo.reset()
    g, x, a = _inputs(4, (2, 3, 4), torch.float32, seed=8)

    def fn(g, x, a):
        return ig_accumulate(g, x, a).abs().sum((1, 2))

    assert_close(torch.compile(fn, fullgraph=True)(g, x, a), fn(g, x, a))


def _bad_cases():
    g, x, a = _inputs(3, (2, 4), torch.float32)
    return [
        ("int dtype", dict(x=x.long()), "x must be float32"),
        ("dtype mismatch", dict(baseline=a.double()), "baseline has dtype"),
        ("path shape", dict(path_grads=g[:, :1]), r"path_grads must be \(S, \*x.shape\)"),
        ("no steps", dict(path_grads=g[:0]), "no path points"),
        ("scalar x", dict(x=x[0, 0], path_grads=g[:, 0, 0], baseline=a[0, 0]), "batch dimension"),
        ("baseline shape", dict(baseline=a[:, :3]), "does not broadcast"),
        ("weights length", dict(weights=[0.5, 0.5]), "2 weights for 3"),
        ("weights nan", dict(weights=float("nan")), "weights must be a finite number, got nan"),
        ("weights grad", dict(weights=torch.ones(3, requires_grad=True)), "constants"),
        ("weights 2-D", dict(weights=torch.ones(3, 1)), r"\(S,\)"),
        ("device", dict(baseline=a.to("meta")), "baseline is on meta"),
    ]


@pytest.mark.parametrize("case", _bad_cases(), ids=lambda c: c[0])
def test_bad_input_raises_clear_error(case):
    _, override, match = case
    g, x, a = _inputs(3, (2, 4), torch.float32)
    args = dict(path_grads=g, x=x, baseline=a)
    args.update(override)
    w = args.pop("weights", None)
    with pytest.raises(ValueError, match=match):
        ig_accumulate(args["path_grads"], args["x"], args["baseline"], weights=w)


@pytest.mark.parametrize("case", _bad_cases(), ids=lambda c: c[0])
def test_bad_input_message_is_the_same_in_cpp_and_python(case):
    # The C++ checks (cpp backend) and the Python ones (reference/triton, fake kernels).
    if "cpp" not in backend.available():
        pytest.skip("cpp not available")
    _, override, _ = case
    g, x, a = _inputs(3, (2, 4), torch.float32)
    args = dict(path_grads=g, x=x, baseline=a)
    args.update(override)
    w = args.pop("weights", None)
    messages = []
    for be in ("cpp", "reference"):
        with backend.use(be), pytest.raises(ValueError) as err:
            ig_accumulate(args["path_grads"], args["x"], args["baseline"], weights=w)
        messages.append(str(err.value))
    assert messages[0] == messages[1]


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gpu_backend_matches_reference(be, dtype):
    g, x, a = (t.cuda() for t in _inputs(7, (33, 3, 28, 29), dtype, seed=9))
    leaves = [t.clone().requires_grad_() for t in (g, x, a)]
    go = torch.randn(x.shape, dtype=dtype, device="cuda")
    with backend.use(be):
        out = ig_accumulate(*leaves)
        grads = torch.autograd.grad(out, leaves, go)
    with backend.use("reference"):
        ref = ig_accumulate(*leaves)
        ref_grads = torch.autograd.grad(ref, leaves, go)
    assert_close(out, ref, be)
    for o, r in zip(grads, ref_grads):
        assert_close(o, r, be)
