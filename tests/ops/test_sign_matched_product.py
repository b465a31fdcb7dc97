"""sign_matched_product: WACR's fused sign-matched product."""
import pytest
import torch

from robustops import backend
from robustops.ops.sign_matched_product import (sign_matched_product,
                                                sign_matched_product_backward_reference,
                                                sign_matched_product_reference)
from robustops.testing import assert_close


def _pair(shape=(4, 3, 5, 6), dtype=torch.float64, seed=0, zeros=True):
    g = torch.Generator().manual_seed(seed)
    b = torch.randn(*shape, generator=g, dtype=torch.float64)
    d = torch.randn(*shape, generator=g, dtype=torch.float64)
    if zeros:  # exact zeros exercise sign(0) = 0 on both sides
        b.view(-1)[::7] = 0
        d.view(-1)[::5] = 0
    return b.to(dtype), d.to(dtype)


def _close(actual, expected, msg=""):
    if expected.dtype == torch.float32:  # a sum over N elements
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5, msg=msg or None)
    else:
        assert_close(actual, expected, msg)


def test_reference_is_the_definition():
    b, d = _pair()
    bf, df = b.flatten(1), d.flatten(1)
    expected = torch.zeros(4, dtype=torch.float64)
    for i in range(4):
        for bj, dj in zip(bf[i].tolist(), df[i].tolist()):
            sb = (bj > 0) - (bj < 0)
            sd = (dj > 0) - (dj < 0)
            expected[i] += bj * dj if sb == sd else abs(dj)
    assert_close(sign_matched_product(b, d), expected)


def test_reference_backward_matches_autograd():
    b, d = (t.flatten(1).requires_grad_() for t in _pair(seed=1, zeros=False))
    go = torch.randn(4, dtype=torch.float64)
    auto = torch.autograd.grad(sign_matched_product_reference(b, d), (b, d), go)
    for got, exp in zip(sign_matched_product_backward_reference(go, b.detach(), d.detach()), auto):
        assert_close(got, exp)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (2, 1500), (3, 1)])
def test_backend_matches_reference(kernel_backend, dtype, shape):
    b, d = _pair(shape, dtype, seed=2)
    lb, ld = b.clone().requires_grad_(), d.clone().requires_grad_()
    go = torch.randn(shape[0], dtype=dtype)
    out = sign_matched_product(lb, ld)
    grads = torch.autograd.grad(out, (lb, ld), go)
    with backend.use("reference"):
        ref = sign_matched_product(lb, ld)
        ref_grads = torch.autograd.grad(ref, (lb, ld), go)
    assert out.shape == (shape[0],) and out.dtype == dtype
    _close(out, ref, kernel_backend)
    for g, r in zip(grads, ref_grads):
        _close(g, r, kernel_backend)


def test_layouts_and_half(kernel_backend):
    b, d = _pair((2, 3, 6, 5), torch.float32, seed=3)
    ref = sign_matched_product_reference(b.flatten(1), d.flatten(1))
    cl = lambda t: t.contiguous(memory_format=torch.channels_last)  # noqa: E731
    _close(sign_matched_product(cl(b), cl(d)), ref)
    _close(sign_matched_product(cl(b), d), ref)
    for dt in (torch.float16, torch.bfloat16):
        out = sign_matched_product(b.to(dt), d.to(dt))
        assert out.dtype == dt
        assert_close(out, sign_matched_product_reference(b.to(dt).flatten(1), d.to(dt).flatten(1)))


def test_empty_batch(kernel_backend):
    b, d = torch.zeros(0, 5), torch.zeros(0, 5)
    assert sign_matched_product(b, d).shape == (0,)


@pytest.mark.parametrize("be", ["reference", "cpp", "triton"])
def test_gradcheck_and_gradgradcheck_fp64(be):
    if be not in backend.available():
        pytest.skip(f"{be} not available")
    # Away from zero: the match mask is constant under gradcheck's perturbations.
    b, d = _pair((2, 12), seed=4, zeros=False)
    b = (b + 0.1 * b.sign()).requires_grad_()
    d = (d + 0.1 * d.sign()).requires_grad_()
    with backend.use(be):
        assert torch.autograd.gradcheck(sign_matched_product, (b, d), fast_mode=be == "triton")
        assert torch.autograd.gradgradcheck(sign_matched_product, (b, d),
                                            fast_mode=be == "triton")


@pytest.mark.parametrize("requires_grad", [False, True])
def test_opcheck(requires_grad):
    b, d = (t.flatten(1).requires_grad_(requires_grad) for t in _pair(seed=5, zeros=False))
    torch.library.opcheck(torch.ops.robustops.sign_matched_product.default, (b, d))
    torch.library.opcheck(torch.ops.robustops.sign_matched_product_backward.default,
                          (torch.randn(4, dtype=torch.float64), b.detach(), d.detach()))
    # The backward op is differentiable (C++ autograd kernel), on (B, *) as the forward.
    go = torch.randn(4, dtype=torch.float64).requires_grad_(requires_grad)
    b4, d4 = (t.detach().reshape(4, 3, 5, 6).requires_grad_(requires_grad) for t in (b, d))
    torch.library.opcheck(torch.ops.robustops.sign_matched_product.default, (b4, d4))
    torch.library.opcheck(torch.ops.robustops.sign_matched_product_backward.default, (go, b4, d4))


def test_compiles_fullgraph():
    torch._dynamo.reset()
    b, d = _pair((2, 3, 4, 4), torch.float32, seed=6)
    fn = lambda b, d: sign_matched_product(b, -d).mean()  # noqa: E731
    _close(torch.compile(fn, fullgraph=True)(b, d), fn(b, d))


@pytest.mark.parametrize("case", [
    ("int", dict(d=torch.zeros(2, 4, dtype=torch.int64)), "d must be float32"),
    ("shape", dict(d=torch.zeros(2, 5)), "same shape"),
    ("dtype", dict(d=torch.zeros(2, 4, dtype=torch.float64)), "d has dtype"),
    ("scalar", dict(b=torch.tensor(1.0), d=torch.tensor(1.0)), "batch dimension"),
    ("device", dict(d=torch.zeros(2, 4, device="meta")), "d is on meta"),
], ids=lambda c: c[0])
def test_bad_input_raises_clear_error(case):
    _, override, match = case
    args = dict(b=torch.zeros(2, 4), d=torch.zeros(2, 4))
    args.update(override)
    with pytest.raises(ValueError, match=match):
        sign_matched_product(args["b"], args["d"])
    if "cpp" in backend.available():
        # The C++ checks (cpp) and the Python ones (reference/triton, fake kernels) agree.
        messages = []
        for be in ("cpp", "reference"):
            with backend.use(be), pytest.raises(ValueError) as err:
                sign_matched_product(args["b"], args["d"])
            messages.append(str(err.value))
        assert messages[0] == messages[1]


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gpu_backend_matches_reference(be, dtype):
    b, d = (t.cuda().requires_grad_() for t in _pair((17, 3, 128, 128), dtype, seed=7))
    go = torch.randn(17, dtype=dtype, device="cuda")
    with backend.use(be):
        out = sign_matched_product(b, d)
        grads = torch.autograd.grad(out, (b, d), go)
    with backend.use("reference"):
        ref = sign_matched_product(b, d)
        ref_grads = torch.autograd.grad(ref, (b, d), go)
    _close(out, ref, be)
    for g, r in zip(grads, ref_grads):
        _close(g, r, be)
