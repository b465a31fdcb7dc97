"""pixel_softmax_kl: CACR's fused channel-sum + pixel softmax + KL-to-uniform term."""
import math

import pytest
import torch

from robustops import backend
from robustops.ops.pixel_softmax_kl import (pixel_softmax_kl,
                                            pixel_softmax_kl_backward_reference,
                                            pixel_softmax_kl_reference)
from robustops.testing import assert_close


def _attr(shape=(4, 3, 5, 6), dtype=torch.float64, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(*shape, generator=g, dtype=torch.float64)).to(dtype)


def _close(actual, expected, msg=""):
    # A reduction over N pixels: float32 sums differ from the reference's order by ~N ulp.
    if expected.dtype == torch.float32:
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=2e-6, msg=msg or None)
    else:
        assert_close(actual, expected, msg)


# ----------------------------------------------------------------------------- reference


def test_reference_is_kl_of_uniform_to_pixel_softmax():
    a = _attr()
    s = a.sum(1).flatten(1)
    q = torch.softmax(s, 1)
    n = s.shape[1]
    u = torch.full_like(q, 1 / n)
    expected = (u * (torch.log(u) - torch.log(q))).sum(1)
    assert_close(pixel_softmax_kl(a), expected)
    # Uniform attributions: KL 0; a concentrated one: close to log N.
    assert_close(pixel_softmax_kl(torch.zeros(2, 3, 4, 4, dtype=torch.float64)),
                 torch.zeros(2, dtype=torch.float64))
    peaked = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    peaked[0, 0, 1, 2] = 60.0
    exact = 60.0 / 16 * 15 - math.log(16) + math.log(1 + 15 * math.exp(-60))
    assert abs(float(pixel_softmax_kl(peaked)) - exact) < 1e-9


def test_reference_backward_matches_autograd():
    a = _attr(seed=1).reshape(4, 3, -1).requires_grad_()
    go = torch.randn(4, dtype=torch.float64)
    (auto,) = torch.autograd.grad(pixel_softmax_kl_reference(a), a, go)
    lse = torch.logsumexp(a.detach().sum(1), -1)
    grad_s = pixel_softmax_kl_backward_reference(go, lse, a.detach())
    assert_close(grad_s[:, None].expand_as(a), auto)


# ----------------------------------------------------------------------------- backends


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (2, 1, 37, 41), (3, 2, 1, 1), (1, 3, 8)])
def test_backend_matches_reference(kernel_backend, dtype, shape):
    # (2, 1, 37, 41): 1517 pixels, more than one Triton block per sample.
    a = _attr(shape, dtype, seed=2, scale=3.0)
    leaf = a.clone().requires_grad_()
    out = pixel_softmax_kl(leaf)
    go = torch.randn(shape[0], dtype=dtype)
    (grad,) = torch.autograd.grad(out, leaf, go)
    with backend.use("reference"):
        ref = pixel_softmax_kl(leaf)
        (ref_grad,) = torch.autograd.grad(ref, leaf, go)
    assert out.shape == (shape[0],) and out.dtype == dtype
    _close(out, ref, kernel_backend)
    _close(grad, ref_grad, kernel_backend)


def test_layouts_and_half(kernel_backend):
    a = _attr((2, 3, 6, 5), torch.float32, seed=3)
    ref = pixel_softmax_kl_reference(a.reshape(2, 3, -1))
    _close(pixel_softmax_kl(a.contiguous(memory_format=torch.channels_last)), ref)
    _close(pixel_softmax_kl(a.transpose(2, 3)), ref)  # the sum over pixels ignores their order
    for dt in (torch.float16, torch.bfloat16):
        out = pixel_softmax_kl(a.to(dt))
        assert out.dtype == dt
        assert_close(out, pixel_softmax_kl_reference(a.to(dt).reshape(2, 3, -1)))


def test_large_values_are_stable(kernel_backend):
    a = _attr((2, 3, 4, 4), torch.float32, seed=4, scale=1e3)
    out = pixel_softmax_kl(a)
    assert torch.isfinite(out).all()
    _close(out, pixel_softmax_kl_reference(a.reshape(2, 3, -1)))


def test_empty_batch(kernel_backend):
    a = torch.zeros(0, 3, 4, 4)
    assert pixel_softmax_kl(a).shape == (0,)
    leaf = a.clone().requires_grad_()
    assert torch.autograd.grad(pixel_softmax_kl(leaf).sum(), leaf)[0].shape == a.shape


@pytest.mark.parametrize("be", ["reference", "cpp", "triton"])
def test_gradcheck_and_gradgradcheck_fp64(be):
    if be not in backend.available():
        pytest.skip(f"{be} not available")
    a = _attr((2, 2, 3, 3), seed=5).requires_grad_()
    with backend.use(be):
        assert torch.autograd.gradcheck(pixel_softmax_kl, (a,), fast_mode=be == "triton")
        assert torch.autograd.gradgradcheck(pixel_softmax_kl, (a,), fast_mode=be == "triton")


# ----------------------------------------------------------------------------- op contract


@pytest.mark.parametrize("requires_grad", [False, True])
def test_opcheck(requires_grad):
    a = _attr((3, 2, 10), seed=6).requires_grad_(requires_grad)
    torch.library.opcheck(torch.ops.robustops.pixel_softmax_kl.default, (a,))
    # (B, C, *pixels): the op flattens the pixels itself.
    torch.library.opcheck(torch.ops.robustops.pixel_softmax_kl.default,
                          (a.detach().reshape(3, 2, 2, 5).requires_grad_(requires_grad),))
    lse = torch.logsumexp(a.detach().sum(1), -1)
    torch.library.opcheck(torch.ops.robustops.pixel_softmax_kl_backward.default,
                          (torch.randn(3, dtype=torch.float64).requires_grad_(requires_grad),
                           lse, a))


def test_compiles_fullgraph():
    torch._dynamo.reset()
    a, b = _attr((2, 3, 4, 4), torch.float32, seed=7), _attr((2, 3, 4, 4), torch.float32, seed=8)

    def cacr(a_true, a_neg):
        return (pixel_softmax_kl(a_neg) - pixel_softmax_kl(a_true)).mean()

    _close(torch.compile(cacr, fullgraph=True)(a, b), cacr(a, b))


@pytest.mark.parametrize("case", [
    ("int", torch.zeros(2, 3, 4, dtype=torch.int64), "float32, float64"),
    ("2-D", torch.zeros(2, 5), "at least 3 dims"),
    ("no channels", torch.zeros(2, 0, 4, 4), "at least one channel and one pixel"),
    ("no pixels", torch.zeros(2, 3, 0, 4), "at least one channel and one pixel"),
], ids=lambda c: c[0])
def test_bad_input_raises_clear_error(case):
    _, attr, match = case
    with pytest.raises(ValueError, match=match):
        pixel_softmax_kl(attr)
    if "cpp" in backend.available():
        # The C++ checks (cpp) and the Python ones (reference/triton, fake kernels) agree.
        messages = []
        for be in ("cpp", "reference"):
            with backend.use(be), pytest.raises(ValueError) as err:
                pixel_softmax_kl(attr)
            messages.append(str(err.value))
        assert messages[0] == messages[1]


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gpu_backend_matches_reference(be, dtype):
    a = _attr((17, 3, 128, 128), dtype, seed=9).cuda().requires_grad_()
    go = torch.randn(17, dtype=dtype, device="cuda")
    with backend.use(be):
        out = pixel_softmax_kl(a)
        (g,) = torch.autograd.grad(out, a, go)
    with backend.use("reference"):
        ref = pixel_softmax_kl(a)
        (rg,) = torch.autograd.grad(ref, a, go)
    _close(out, ref, be)
    _close(g, rg, be)
