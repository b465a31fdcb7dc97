"""pgd_step: every backend against the plain-PyTorch reference, plus the op contract."""
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robustops import backend, pgd_step, pgd_step_, pgd_step_reference
from robustops.bench.pgd_step import (eager_l2_step, eager_linf_step, make_inputs,
                                      torchattacks_linf_step)
from robustops.bench.timing import count_dispatched
from robustops.testing import assert_close

NORMS = ("linf", "l2")
EPS = {"linf": 8 / 255, "l2": 0.5}
ALPHA = {"linf": 2 / 255, "l2": 0.2}


def inputs(shape, dtype=torch.float32, seed=0, layout="contiguous"):
    x, x_nat, grad = make_inputs(shape, dtype=torch.float64, seed=seed)
    out = [t.to(dtype) for t in (x, x_nat, grad)]
    if layout == "channels_last":
        out = [t.contiguous(memory_format=torch.channels_last) for t in out]
    elif layout == "strided":
        # Every other column of a wider tensor: not dense.
        out = [torch.cat([t, t], dim=-1)[..., ::2] for t in out]
        assert out[0].shape[-1] == 1 or not out[0].is_contiguous()
    return out


# ----------------------------------------------------------------------------- reference


@pytest.mark.parametrize("norm", NORMS)
def test_reference_matches_eager_formulas(norm):
    x, x_nat, grad = inputs((6, 3, 8, 8), torch.float64)
    ref = pgd_step_reference(x, x_nat, grad, EPS[norm], ALPHA[norm], norm)
    if norm == "linf":
        assert_close(ref, eager_linf_step(x, x_nat, grad, EPS[norm], ALPHA[norm]))
        assert_close(ref, torchattacks_linf_step(x, x_nat, grad, EPS[norm], ALPHA[norm]))
    else:
        # torchattacks adds 1e-10 to ||g||: equal to ~1e-10 relative.
        torch.testing.assert_close(ref, eager_l2_step(x, x_nat, grad, EPS[norm], ALPHA[norm]),
                                   rtol=1e-8, atol=1e-9)


def test_reference_linf_projection_and_box():
    x, x_nat, grad = inputs((4, 3, 5, 5), torch.float64)
    x_nat = 0.1 + 0.8 * x_nat  # clean images inside the box
    out = pgd_step_reference(x, x_nat, grad, 0.03, 0.5, "linf", lo=0.1, hi=0.9)
    assert ((out - x_nat).abs() <= 0.03 + 1e-12).all()
    assert out.min() >= 0.1 and out.max() <= 0.9


def test_reference_l2_projection_radius():
    x, x_nat, grad = inputs((4, 3, 5, 5), torch.float64)
    out = pgd_step_reference(x, x_nat, grad, 0.25, 10.0, "l2", lo=-10, hi=10)
    radius = (out - x_nat).flatten(1).norm(dim=1)
    torch.testing.assert_close(radius, torch.full_like(radius, 0.25))


# ----------------------------------------------------------------------------- backends


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("shape", [(3, 3, 7, 5), (1, 1, 1, 1), (5, 2, 9, 33)])
def test_backend_matches_reference(kernel_backend, norm, dtype, layout, shape):
    x, x_nat, grad = inputs(shape, dtype, layout=layout)
    ref = pgd_step_reference(x, x_nat, grad, EPS[norm], ALPHA[norm], norm)
    out = pgd_step(x, x_nat, grad, EPS[norm], ALPHA[norm], norm=norm)
    assert out.dtype == dtype and out.shape == x.shape
    assert_close(out, ref, f"{kernel_backend} {norm}")
    if layout == "channels_last":
        assert out.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("shape", [(4, 3, 6, 6), (3, 10), (2, 2, 3, 4, 5)])
def test_backend_per_sample_eps_alpha_and_inplace(kernel_backend, norm, shape):
    x, x_nat, grad = inputs(shape, torch.float32, seed=1)
    b = shape[0]
    eps = torch.linspace(0.0, 2 * EPS[norm], b)
    alpha = torch.linspace(ALPHA[norm], 0.0, b, dtype=torch.float64)  # cast to compute type
    ref = pgd_step_reference(x, x_nat, grad, eps, alpha.float(), norm)
    x_in = x.clone()
    ret = pgd_step_(x_in, x_nat, grad, eps, alpha, norm=norm)
    assert ret is x_in
    assert_close(x_in, ref)
    # Python floats and (B,) tensors of equal values agree.
    out_t = pgd_step(x, x_nat, grad, torch.full((b,), 0.1), torch.full((b,), 0.01), norm=norm)
    out_f = pgd_step(x, x_nat, grad, 0.1, 0.01, norm=norm)
    assert_close(out_t, out_f)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("norm", NORMS)
def test_cpp_half_types(dtype, norm):
    if "cpp" not in backend.available():
        pytest.skip("cpp backend not built")
    x, x_nat, grad = inputs((4, 3, 9, 9), dtype)
    with backend.use("cpp"):
        out = pgd_step(x, x_nat, grad, EPS[norm], ALPHA[norm], norm=norm)
    assert out.dtype == dtype
    assert_close(out, pgd_step_reference(x, x_nat, grad, EPS[norm], ALPHA[norm], norm))


def test_triton_float16():
    if "triton" not in backend.available():
        pytest.skip("triton not available")
    x, x_nat, grad = inputs((2, 3, 8, 8), torch.float16)
    with backend.use("triton"):
        out = pgd_step(x, x_nat, grad, 0.03, 0.01)
    assert_close(out, pgd_step_reference(x, x_nat, grad, 0.03, 0.01))


def test_grad_dtype_may_differ_and_is_cast(kernel_backend):
    x, x_nat, grad = inputs((2, 3, 4, 4), torch.float32)
    out = pgd_step(x, x_nat, grad.to(torch.bfloat16), 0.1, 0.01, norm="l2")
    ref = pgd_step_reference(x, x_nat, grad.to(torch.bfloat16).float(), 0.1, 0.01, "l2")
    assert_close(out, ref)


def test_x_nat_aliasing_out_is_safe(kernel_backend):
    x, _, grad = inputs((2, 3, 4, 4), torch.float32)
    expected = pgd_step_reference(x, x, grad, 0.1, 0.05)
    pgd_step_(x, x, grad, 0.1, 0.05)  # x_nat is x: read before any write
    assert_close(x, expected)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    b=st.integers(1, 4), c=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    layout=st.sampled_from(["contiguous", "channels_last", "strided"]),
    norm=st.sampled_from(NORMS),
    eps=st.floats(0.0, 1.0), alpha=st.floats(0.0, 0.5),
    per_sample=st.booleans(), seed=st.integers(0, 2**16),
)
def test_property_cpp_matches_reference(b, c, h, w, dtype, layout, norm, eps, alpha,
                                        per_sample, seed):
    if "cpp" not in backend.available():
        pytest.skip("cpp backend not built")
    x, x_nat, grad = inputs((b, c, h, w), dtype, seed=seed, layout=layout)
    e = torch.full((b,), eps, dtype=dtype) * torch.rand(b, dtype=dtype) if per_sample else eps
    ref = pgd_step_reference(x, x_nat, grad, e, alpha, norm)
    with backend.use("cpp"):
        out = pgd_step(x, x_nat, grad, e, alpha, norm=norm)
        x_in = x.clone()
        pgd_step_(x_in, x_nat, grad, e, alpha, norm=norm)  # the one-call C++ fast path
        x_strided = x.clone() if layout != "strided" else x
        pgd_step_(x_strided, x_nat, grad, e, alpha, norm=norm)  # general path when strided
    assert_close(out, ref)
    assert_close(x_in, ref)
    assert_close(x_strided, ref)


# ----------------------------------------------------------------------------- non-finite values


@pytest.mark.parametrize("be", ["reference", "cpp", "triton"])
def test_nan_and_inf_gradients_documented_behaviour(be):
    if be not in backend.available():
        pytest.skip(f"{be} not available")
    x, x_nat, grad = inputs((2, 3, 4, 4), torch.float32)
    grad[0, 0, 0, 0] = float("nan")
    grad[0, 0, 0, 1] = float("inf")
    grad[1] = float("nan")  # a whole sample of NaN gradients
    with backend.use(be):
        linf = pgd_step(x, x_nat, grad, 0.5, 0.1, norm="linf")
        l2 = pgd_step(x, x_nat, grad, 5.0, 0.1, norm="l2")
    # NaN entries never move their pixel; L-inf moves an Inf entry by +alpha.
    assert linf[0, 0, 0, 0] == x[0, 0, 0, 0]
    assert linf[0, 0, 0, 1] == min(x[0, 0, 0, 1].item() + 0.1, 1.0) or \
        math.isclose(linf[0, 0, 0, 1].item(), min(x[0, 0, 0, 1].item() + 0.1, 1.0), rel_tol=1e-6)
    assert torch.equal(linf[1], x[1].clamp(x_nat[1] - 0.5, x_nat[1] + 0.5))
    # L2: NaN/Inf entries count as 0 in the norm and the direction.
    g_clean = grad.clone()
    g_clean[~torch.isfinite(g_clean)] = 0
    assert_close(l2, pgd_step_reference(x, x_nat, g_clean, 5.0, 0.1, "l2"))
    assert torch.isfinite(linf).all() and torch.isfinite(l2).all()
    assert torch.equal(l2[1], x[1])  # all-NaN gradient: no step


@pytest.mark.parametrize("be", ["reference", "cpp"])
@pytest.mark.parametrize("where", ["x", "x_nat"])
@pytest.mark.parametrize("norm", NORMS)
def test_nan_images_raise_on_cpu(be, where, norm):
    if be not in backend.available():
        pytest.skip(f"{be} not available")
    x, x_nat, grad = inputs((2, 3, 4, 4), torch.float32)
    (x if where == "x" else x_nat)[1, 2, 3, 3] = float("nan")
    with backend.use(be), pytest.raises(ValueError, match="NaN or Inf"):
        pgd_step(x, x_nat, grad, 0.1, 0.01, norm=norm)


@pytest.mark.parametrize("be", ["reference", "cpp", "triton"])
@pytest.mark.parametrize("value", [float("inf"), float("-inf")])
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("inplace", [False, True])
def test_infinite_x_raises_on_cpu(be, value, norm, inplace):
    # The projection maps an infinite x to a finite x_nat +- eps: it must still raise
    # (README), as NaN does, and not return x_nat + eps for that pixel.
    if be not in backend.available():
        pytest.skip(f"{be} not available")
    x = torch.full((1, 3), 0.5)
    x[0, 0] = value
    fn = pgd_step_ if inplace else pgd_step
    with backend.use(be), pytest.raises(ValueError, match="x or x_nat contains NaN or Inf"):
        fn(x, torch.full((1, 3), 0.5), torch.ones(1, 3), 0.1, 0.05, norm=norm)
    # Larger images, an Inf in the last sample (another chunk of the CPU loop).
    x, x_nat, grad = inputs((3, 3, 8, 8), torch.float32)
    x[2, 1, 7, 7] = value
    with backend.use(be), pytest.raises(ValueError, match="NaN or Inf"):
        fn(x, x_nat, grad, 0.1, 0.01, norm=norm)
    # A huge but finite x is no error (L2: its ||x - x_nat||^2 overflows; the step
    # projects onto x_nat), the same on every backend.
    x = torch.full((1, 3), 0.5)
    x[0, 0] = 1e20
    with backend.use(be):
        out = fn(x, torch.full((1, 3), 0.5), torch.ones(1, 3), 0.1, 0.05, norm=norm)
    expected = [[0.6, 0.55, 0.55]] if norm == "linf" else [[0.5, 0.5, 0.5]]
    assert torch.equal(out, torch.tensor(expected))


# ----------------------------------------------------------------------------- bad input


def _bad_cases():
    x, x_nat, grad = inputs((2, 3, 4, 4), torch.float32)
    return [
        ("shape", dict(x_nat=x_nat[:, :2]), ValueError, "x_nat has shape"),
        ("grad shape", dict(grad=grad[:1]), ValueError, "grad has shape"),
        ("dtype", dict(x_nat=x_nat.double()), TypeError, "x_nat has dtype"),
        ("integer", dict(x=(x * 255).to(torch.uint8)), TypeError, "floating point"),
        ("neg eps", dict(eps=-0.1), ValueError, "eps must be finite and >= 0"),
        ("nan eps", dict(eps=float("nan")), ValueError, "eps must be finite"),
        ("neg alpha", dict(alpha=-1.0), ValueError, "alpha must be finite and >= 0"),
        ("eps length", dict(eps=torch.ones(3)), ValueError, r"shape \(2,\)"),
        ("eps int tensor", dict(eps=torch.ones(2, dtype=torch.int64)), TypeError, "floating"),
        ("eps negative entry", dict(eps=torch.tensor([0.1, -0.1])), ValueError, "per-sample eps"),
        ("alpha nan entry", dict(alpha=torch.tensor([0.1, float("nan")])), ValueError,
         "per-sample alpha"),
        ("eps type", dict(eps="0.1"), TypeError, "eps must be a float"),
        ("norm", dict(norm="l1"), ValueError, "norm must be"),
        ("box", dict(lo=1.0, hi=0.0), ValueError, "lo <= hi"),
        ("empty", dict(x=x[:0], x_nat=x_nat[:0], grad=grad[:0]), ValueError, "empty batch"),
        ("not a tensor", dict(grad=[1.0]), TypeError, "grad must be a torch.Tensor"),
        ("device", dict(x_nat=x_nat.to("meta")), ValueError, "x_nat is on meta"),
    ]


@pytest.mark.parametrize("case", _bad_cases(), ids=lambda c: c[0])
@pytest.mark.parametrize("inplace", [False, True])
def test_bad_input_raises_clear_error(case, inplace):
    _, override, exc, match = case
    x, x_nat, grad = inputs((2, 3, 4, 4), torch.float32)
    args = dict(x=x, x_nat=x_nat, grad=grad, eps=0.1, alpha=0.01, norm="linf", lo=0.0, hi=1.0)
    args.update(override)
    fn = pgd_step_ if inplace else pgd_step
    with pytest.raises(exc, match=match):
        fn(args["x"], args["x_nat"], args["grad"], args["eps"], args["alpha"],
           norm=args["norm"], lo=args["lo"], hi=args["hi"])


def test_norm_spellings():
    from robustops.ops.pgd_step import normalize_norm
    assert {normalize_norm(n) for n in ("Linf", "inf", float("inf"), "L_inf")} == {"linf"}
    assert {normalize_norm(n) for n in ("L2", 2, "2", 2.0)} == {"l2"}


# ----------------------------------------------------------------------------- op contract


def _sample_args(norm, dtype=torch.float64, per_sample=False, requires_grad=False):
    x, x_nat, grad = inputs((3, 2, 4, 5), dtype, seed=3)
    eps_t = torch.tensor([0.1, 0.2, 0.05], dtype=dtype) if per_sample else None
    if requires_grad:
        x, x_nat, grad = (t.requires_grad_() for t in (x, x_nat, grad))
    return (x, x_nat, grad, EPS[norm], ALPHA[norm], eps_t, None, 0.0, 1.0, norm)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("per_sample", [False, True])
def test_opcheck(norm, per_sample):
    ops = torch.ops.robustops
    torch.library.opcheck(ops.pgd_step.default, _sample_args(norm, per_sample=per_sample))
    torch.library.opcheck(ops.pgd_step.default,
                          _sample_args(norm, per_sample=per_sample, requires_grad=True))
    torch.library.opcheck(ops.pgd_step_.default, _sample_args(norm, per_sample=per_sample))
    x, x_nat, grad, *rest = _sample_args(norm, per_sample=per_sample)
    torch.library.opcheck(ops.pgd_step_backward.default, (torch.randn_like(x), x, x_nat, grad, *rest))


@pytest.mark.parametrize("norm", NORMS)
def test_gradcheck_fp64(norm):
    x, x_nat, grad = inputs((2, 2, 3, 3), torch.float64, seed=5)
    # Keep away from the box edges and the kinks of sign/clamp so finite
    # differences see a smooth function.
    x_nat = x_nat * 0.5 + 0.25
    x = x_nat + 0.01 * torch.randn_like(x_nat)
    eps = 0.05 if norm == "linf" else 0.1
    x, x_nat, grad = (t.detach().requires_grad_() for t in (x, x_nat, grad))
    fn = lambda a, b, c: pgd_step(a, b, c, eps, 0.02, norm=norm)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, x_nat, grad), eps=1e-7, atol=1e-6)


@pytest.mark.parametrize("norm", NORMS)
def test_backward_matches_autograd_of_reference(norm):
    x, x_nat, grad = inputs((3, 2, 4, 4), torch.float64, seed=7)
    x = (x_nat + 0.3 * torch.randn_like(x)).clamp(0, 1)  # some clipped, some not
    go = torch.randn_like(x)
    leaves = [t.detach().requires_grad_() for t in (x, x_nat, grad)]
    ours = torch.autograd.grad(pgd_step(*leaves, 0.1, 0.05, norm=norm), leaves, go)
    leaves2 = [t.detach().requires_grad_() for t in (x, x_nat, grad)]
    ref = torch.autograd.grad(pgd_step_reference(*leaves2, 0.1, 0.05, norm), leaves2, go,
                              allow_unused=True)
    for a, b in zip(ours, ref):
        assert_close(a, torch.zeros_like(a) if b is None else b)


def test_one_op_dispatched_per_fused_step():
    x, x_nat, grad = inputs((4, 3, 8, 8))
    fused = count_dispatched(lambda: pgd_step_(x, x_nat, grad, 0.03, 0.01))
    assert dict(fused.ops) == {"pgd_step_": 1}
    eager = count_dispatched(lambda: eager_linf_step(x, x_nat, grad, 0.03, 0.01))
    assert eager.total >= 6


def test_fast_path_and_dispatcher_path_agree():
    x, x_nat, grad = inputs((3, 3, 5, 7))
    a, b = x.clone(), x.clone()
    pgd_step_(a, x_nat, grad, 0.03, 0.01, norm="l2", lo=0.2, hi=0.8)
    torch.ops.robustops.pgd_step_(b, x_nat, grad, 0.03, 0.01, None, None, 0.2, 0.8, "l2")
    assert torch.equal(a, b)
    # x that requires grad, under no_grad: allowed, and x stays a leaf that requires grad.
    leaf = x.clone().requires_grad_()
    with torch.no_grad():
        pgd_step_(leaf, x_nat, grad, 0.03, 0.01)
    assert leaf.requires_grad and leaf.is_leaf
    with pytest.raises(RuntimeError, match="x requires grad"):
        pgd_step_(x.clone().requires_grad_(), x_nat, grad, 0.03, 0.01)


def test_inplace_bumps_version_counter():
    x, x_nat, grad = inputs((2, 3, 4, 4))
    v = x._version
    pgd_step_(x, x_nat, grad, 0.03, 0.01)
    assert x._version > v


# ----------------------------------------------------------------------------- compile, autocast


def _quadratic_target(x_nat):
    return (x_nat.flip(-1) * 0.9 + 0.05).contiguous()


def test_compiled_pgd_loop_fullgraph():
    """A PGD loop (analytic gradient of 0.5 ||x - t||^2) compiled with fullgraph=True."""
    torch._dynamo.reset()
    x_nat = inputs((4, 3, 8, 8))[1]
    target = _quadratic_target(x_nat)

    def attack(x_nat, target, steps: int = 5):
        x = x_nat.clone()
        for _ in range(steps):
            g = x - target  # ascend towards... the loss gradient
            pgd_step_(x, x_nat, g, 0.1, 0.03)
            x = pgd_step(x, x_nat, g, 0.5, 0.02, norm="l2")
        return x

    compiled = torch.compile(attack, fullgraph=True, backend="inductor")
    assert_close(compiled(x_nat, target), attack(x_nat, target))


@pytest.mark.slow
def test_compiled_step_with_autograd_grad():
    """An attack step that takes torch.autograd.grad of a model, compiled fullgraph."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 5)).eval()
    x_nat = inputs((4, 3, 4, 4))[1]
    y = torch.tensor([0, 1, 2, 3])

    def step(x, x_nat, y):
        x = x.detach().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        (g,) = torch.autograd.grad(loss, x)
        return pgd_step(x.detach(), x_nat, g, 0.03, 0.01)

    old = torch._dynamo.config.trace_autograd_ops
    torch._dynamo.config.trace_autograd_ops = True
    try:
        compiled = torch.compile(step, fullgraph=True)
        assert_close(compiled(x_nat, x_nat, y), step(x_nat, x_nat, y))
    finally:
        torch._dynamo.config.trace_autograd_ops = old


def test_autocast_attack_loop_keeps_fp32():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 6 * 6, 3)).eval()
    x_nat = inputs((4, 3, 8, 8))[1]
    y = torch.tensor([0, 1, 2, 0])
    x = x_nat.clone()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for _ in range(3):
            x.requires_grad_(True)
            loss = torch.nn.functional.cross_entropy(model(x), y)
            (g,) = torch.autograd.grad(loss, x)
            x = x.detach()
            expected = pgd_step_reference(x, x_nat, g, 0.03, 0.01)
            with torch.no_grad():
                pgd_step_(x, x_nat, g, 0.03, 0.01)
            assert x.dtype == torch.float32
            assert_close(x, expected)
