"""v1_response: every backend against the plain-PyTorch reference, gradients, noise, contract."""
import math

import pytest
import torch

from robustops import backend, v1_response
from robustops.counter_rng import counter_uniform
from robustops.ops.v1_response import (V1_NOISE_STREAM, noise_bases, v1_noise_normals,
                                       v1_response_backward_reference, v1_response_reference)
from robustops.testing import assert_close

K, S_, L_ = 25.0, 0.35, 0.07
CHANNELS = [(3, 2), (0, 3), (4, 0)]  # (simple S, complex Cc)


def inputs(s, cc, dtype=torch.float64, layout="contiguous", batch=2, h=5, w=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    q0 = torch.randn(batch, s + cc, h, w, generator=g, dtype=torch.float64)
    q1 = torch.randn(batch, cc, h, w, generator=g, dtype=torch.float64)
    q0, q1 = q0.to(dtype), q1.to(dtype)
    if layout == "channels_last":
        q0, q1 = (t.contiguous(memory_format=torch.channels_last) for t in (q0, q1))
    elif layout == "strided":  # every other column of a wider tensor: not dense
        q0, q1 = (torch.cat([t, t], dim=-1)[..., ::2] for t in (q0, q1))
    return q0, q1


def assert_output_close(actual, expected, msg=""):
    """assert_close, with float32's absolute tolerance scaled to the responses' size.

    The noise's inverse affine (r - l) / s cancels where r is close to l, so float32
    results (FMA-contracted in the kernels, not in eager PyTorch) may differ by a few
    ulp of s x + l, divided by s: an absolute error that grows with x.
    """
    if expected.dtype == torch.float32 and expected.numel():
        atol = 1e-6 * max(1.0, expected.abs().max().item())
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=atol,
                                   msg=(lambda m: f"{msg}: {m}") if msg else None)
    else:
        assert_close(actual, expected, msg)


def reference(q0, q1, noise, seed=3, index=None, **kw):
    index = torch.arange(q0.shape[0]) if index is None else index
    return v1_response_reference(q0, q1, K, S_, L_, noise, seed, index, **kw)


def reference_grads(go, q0, q1, noise, seed=3):
    return v1_response_backward_reference(go, q0, q1, K, S_, L_, noise, seed,
                                          torch.arange(q0.shape[0]))


# ----------------------------------------------------------------------------- reference


def test_reference_formula_and_noise_stream():
    q0, q1 = inputs(3, 2)
    x = torch.cat([K * q0[:, :3].relu(), K * (q0[:, 3:] ** 2 + q1 ** 2).sqrt() / math.sqrt(2)], 1)
    assert_close(reference(q0, q1, noise=False), x)
    n = v1_noise_normals(x.shape, 3, torch.arange(2), torch.float64)
    r = S_ * x + L_
    r = r + n * torch.sqrt(r.relu() + 1e-4)
    assert_close(reference(q0, q1, noise=True), ((r - L_) / S_).relu())
    assert noise_bases(3)[0] != noise_bases(3)[1]


@pytest.mark.parametrize("shape", [(2, 5, 5, 3), (3, 4, 2, 2), (1, 1, 1, 1)])
def test_noise_normals_are_box_muller_pairs(shape):
    # Element j of a sample is normal j % 2 of pair j // 2: R cos(2 pi u2), R sin(2 pi u2)
    # with u1, u2 the counter uniforms of the pair on V1_NOISE_STREAM's two streams.
    idx = torch.tensor([7, 2**40 + 3, 0])[: shape[0]]
    numel = math.prod(shape[1:])
    pairs = (numel + 1) // 2
    u1 = counter_uniform(11, 2 * V1_NOISE_STREAM, idx, pairs, torch.float64)
    u2 = counter_uniform(11, 2 * V1_NOISE_STREAM + 1, idx, pairs, torch.float64)
    radius = torch.sqrt(-2 * torch.log(u1))
    n = v1_noise_normals(shape, 11, idx, torch.float64).reshape(shape[0], numel)
    assert_close(n[:, 0::2], radius * torch.cos(2 * math.pi * u2)[:, : (numel + 1) // 2])
    assert_close(n[:, 1::2], (radius * torch.sin(2 * math.pi * u2))[:, : numel // 2])
    # Keyed by (seed, sample index, element): an int offset is sample_index's.
    assert torch.equal(v1_noise_normals(shape, 11, 5, torch.float64),
                       v1_noise_normals(shape, 11, torch.arange(5, 5 + shape[0]), torch.float64))
    assert v1_noise_normals(shape, 11, idx, torch.float32).dtype == torch.float32


def test_noise_normals_statistics():
    # Both members of a pair are standard normal and uncorrelated (Box-Muller).
    n = v1_noise_normals((64, 8, 32, 32), 0, None, torch.float64).reshape(64, -1)
    even, odd = n[:, 0::2].flatten(), n[:, 1::2].flatten()
    m = even.numel()
    for z in (even, odd):
        assert abs(z.mean().item()) < 5 / math.sqrt(m)
        assert abs(z.var().item() - 1) < 5 * math.sqrt(2 / m)
        assert abs((z ** 4).mean().item() - 3) < 5 * math.sqrt(96 / m)
    assert abs((even * odd).mean().item()) < 5 / math.sqrt(m)
    assert abs((even ** 2 * odd ** 2).mean().item() - 1) < 5 * math.sqrt(8 / m)


@pytest.mark.parametrize("noise", [False, True])
def test_reference_backward_matches_autograd(noise):
    q0, q1 = inputs(3, 2, h=4, w=4)
    a, b = q0.clone().requires_grad_(), q1.clone().requires_grad_()
    out = reference(a, b, noise)
    go = torch.randn_like(out)
    ga, gb = torch.autograd.grad(out, (a, b), go)
    r0, r1 = reference_grads(go, q0, q1, noise)
    assert_close(r0, ga)
    assert_close(r1, gb)


# ----------------------------------------------------------------------------- backends


@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("noise", [False, True])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_backend_matches_reference(kernel_backend, dtype, layout, noise, channels):
    s, cc = channels
    q0, q1 = inputs(s, cc, dtype, layout)
    ref = reference(q0, q1, noise)
    go = torch.randn(ref.shape, dtype=dtype)  # contiguous: differs from out's strides for CL
    r0, r1 = reference_grads(go, q0, q1, noise)
    a, b = q0.clone().requires_grad_(), q1.clone().requires_grad_()
    out = v1_response(a, b, seed=3, noise=noise)
    assert out.dtype == dtype and out.shape == q0.shape
    if layout == "channels_last":
        assert out.is_contiguous(memory_format=torch.channels_last)
    else:
        assert out.is_contiguous()
    msg = f"{kernel_backend} {dtype} {layout} noise={noise} S,Cc={channels}"
    assert_output_close(out, ref, msg)
    out.backward(go)
    assert_close(a.grad, r0, msg + " grad_q0")
    if cc:
        assert_close(b.grad, r1, msg + " grad_q1")
    else:
        assert b.grad.shape == q1.shape


@pytest.mark.parametrize("channels", [(3, 2), (0, 3)])
@pytest.mark.parametrize("hw", [(4, 3), (5, 3)])  # even planes: pixel pairs in channels_last
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_backend_matches_reference_plane_parity(kernel_backend, layout, hw, channels):
    # Box-Muller pairs straddle channels when H*W is odd; channels_last pairs pixels
    # when it is even: both walks against the reference, float32 (float Box-Muller).
    q0, q1 = inputs(*channels, torch.float32, layout, batch=3, h=hw[0], w=hw[1])
    idx = torch.tensor([1, 2**33 + 5, 0])
    ref = reference(q0, q1, True, index=idx)
    with torch.no_grad():
        out = v1_response(q0, q1, seed=3, index=idx)
    assert_output_close(out, ref, f"{kernel_backend} {layout} {hw} {channels}")
    go = torch.randn(ref.shape, dtype=torch.float64)
    a, b = (t.double().requires_grad_() for t in (q0, q1))
    v1_response(a, b, seed=3, index=idx).backward(go)
    r0, r1 = v1_response_backward_reference(go, a.detach(), b.detach(), K, S_, L_, True, 3, idx)
    assert_close(a.grad, r0)
    assert_close(b.grad, r1)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("hw", [(33, 31), (34, 31)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cpp_noise_matches_reference_at_scale(dtype, hw, layout):
    # The CPU kernel restates Box-Muller without libm (so it vectorises), in float for
    # float32: check it on many draws and both walks; float64 also backward (float32
    # gradients can flip the final relu's mask where its input rounds across 0).
    if "cpp" not in backend.available():
        pytest.skip("cpp backend not available here")
    q0, q1 = inputs(40, 24, dtype, layout, batch=3, h=hw[0], w=hw[1])
    idx = torch.tensor([2**40 + 1, 7, 123456])
    ref = reference(q0, q1, True, index=idx)
    a, b = q0.clone().requires_grad_(), q1.clone().requires_grad_()
    with backend.use("cpp"):
        out = v1_response(a, b, seed=3, index=idx)
    assert_output_close(out, ref)
    if dtype == torch.float64:
        go = torch.randn(ref.shape, dtype=dtype)
        r0, r1 = v1_response_backward_reference(go, q0, q1, K, S_, L_, True, 3, idx)
        with backend.use("cpp"):
            out.backward(go)
        assert_close(a.grad, r0)
        assert_close(b.grad, r1)


def test_float_noise_within_few_ulp_of_double():
    # float32 outputs draw Box-Muller in float: with k_exc = 0, s = 1, l = 0 the op
    # returns relu(n * 0.01) exactly up to the float normal's error (a few ulp).
    if "cpp" not in backend.available():
        pytest.skip("cpp backend not available here")
    shape = (2, 64, 32, 32)
    q0, q1 = torch.zeros(shape), torch.zeros(2, 0, 32, 32)
    with backend.use("cpp"):
        y = v1_response(q0, q1, k_exc=0.0, noise_scale=1.0, noise_level=0.0, seed=4)
    n = v1_noise_normals(shape, 4, None, torch.float64)
    expected = (n * 0.01).relu()  # sqrt(0 + 1e-4) = 0.01
    err = (y.double() - expected).abs() / (expected.abs() * 2.0 ** -23).clamp_min(1e-300)
    pos = expected > 1e-6
    assert pos.float().mean() > 0.45
    assert err[pos].max().item() <= 6, err[pos].max().item()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_types_compute_in_float(kernel_backend, dtype):
    q0, q1 = inputs(3, 2, dtype, "channels_last")
    out = v1_response(q0, q1, seed=3)
    assert out.dtype == dtype and out.is_contiguous(memory_format=torch.channels_last)
    assert_close(out, reference(q0, q1, True))


def test_complex_gradient_at_zero_is_zero(kernel_backend):
    q0, q1 = inputs(2, 3)
    q0[:, 2:], q1[:] = 0.0, 0.0
    for noise in (False, True):
        a, b = q0.clone().requires_grad_(), q1.clone().requires_grad_()
        v1_response(a, b, seed=1, noise=noise).sum().backward()
        assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()
        assert (a.grad[:, 2:] == 0).all() and (b.grad == 0).all()


@pytest.mark.parametrize("be", ["reference", "cpp", "triton"])
def test_empty_batch(be):
    if be not in backend.available():
        pytest.skip(f"backend {be} not available here")
    with backend.use(be):
        a = torch.zeros(0, 5, 4, 4, requires_grad=True)
        b = torch.zeros(0, 2, 4, 4, requires_grad=True)
        out = v1_response(a, b)
        assert out.shape == (0, 5, 4, 4)
        out.sum().backward()
        assert a.grad.shape == a.shape and b.grad.shape == b.shape


# ----------------------------------------------------------------------------- non-finite, extreme


def _backend_or_skip(be):
    if be not in backend.available():
        pytest.skip(f"backend {be} not available here")


@pytest.mark.parametrize("be", ["reference", "cpp", "triton"])
@pytest.mark.parametrize("noise", [False, True])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_nan_propagates(be, noise, layout, dtype):
    # relu(NaN) = NaN (the docstring, torch.relu): a NaN in q0 or q1 gives NaN at its
    # element, with or without noise, and nothing else changes.
    _backend_or_skip(be)
    q0, q1 = inputs(3, 2, dtype, layout)
    nan = float("nan")
    q0[0, 0, 0, 0] = nan       # a simple cell
    q0[1, 4, 2, 1] = nan       # a complex cell, through q0
    q1[0, 0, 3, 2] = nan       # complex channel S + 0 = 3, through q1
    expect = torch.zeros(q0.shape, dtype=torch.bool)
    expect[0, 0, 0, 0] = expect[1, 4, 2, 1] = expect[0, 3, 3, 2] = True
    with backend.use(be):
        out = v1_response(q0, q1, seed=3, noise=noise)
        assert torch.equal(torch.isnan(out), expect)
        ref = reference(q0, q1, noise)
        assert_output_close(out.nan_to_num(0.0), ref.nan_to_num(0.0))
        # The reproducer.
        a = torch.randn(1, 2, 2, 2)
        a[0, 0, 0, 0] = nan
        assert torch.isnan(v1_response(a, torch.randn(1, 1, 2, 2), noise=False)[0, 0, 0, 0])


@pytest.mark.parametrize("be", ["reference", "cpp", "triton"])
@pytest.mark.parametrize("dtype,scale", [(torch.float32, 1e30), (torch.float32, 1e-30),
                                         (torch.float32, 1.5e19), (torch.float64, 1e300),
                                         (torch.float64, 1e-300)], ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_complex_energy_neither_overflows_nor_underflows(be, dtype, scale, layout):
    # sqrt(q0^2 + q1^2) is computed hypot-style on every backend: inputs near 1e30 give
    # the finite energy (once +inf in cpp, NaN in the reference with noise), tiny ones
    # the nonzero energy; the gradient is finite too.
    _backend_or_skip(be)
    q0, q1 = inputs(3, 2, torch.float64, layout)
    q0, q1 = (q0 * scale).to(dtype), (q1 * scale).to(dtype)
    a, b = q0.double()[:, 3:], q1.double()
    exact = K * torch.hypot(a, b) / math.sqrt(2)
    rtol = 2e-6 if dtype == torch.float32 else 1e-14
    with backend.use(be):
        out = v1_response(q0, q1, seed=3, noise=False)
        torch.testing.assert_close(out[:, 3:].double(), exact, rtol=rtol, atol=0)
        for noise in (False, True):
            x0, x1 = q0.clone().requires_grad_(), q1.clone().requires_grad_()
            y = v1_response(x0, x1, seed=3, noise=noise)
            assert torch.isfinite(y).all()
            assert_output_close(y.detach(), reference(q0, q1, noise))
            y.sum().backward()
            assert torch.isfinite(x0.grad).all() and torch.isfinite(x1.grad).all()
        # Noise off: d/dq0 of k |q| / sqrt 2 is k q0 / (sqrt 2 |q|).
        x0 = q0.clone().requires_grad_()
        v1_response(x0, q1, noise=False).sum().backward()
        g = (K / math.sqrt(2)) * a / torch.hypot(a, b)
        torch.testing.assert_close(x0.grad[:, 3:].double(), g, rtol=rtol * 10, atol=0)


@pytest.mark.parametrize("be", ["reference", "cpp", "triton"])
def test_overflowing_energy_is_inf_on_every_backend(be):
    # Documented: +inf only where the cell's value exceeds the range (or an input is
    # infinite); through the noise, +inf or NaN as the normal's sign has it, the same
    # on every backend.
    _backend_or_skip(be)
    q0, q1 = inputs(3, 2, torch.float32)
    q0[0, 3, 0, 0], q1[0, 0, 0, 0] = 3e38, 3e38          # energy beyond float32
    q0[1, 4, 1, 1], q1[1, 1, 2, 2] = float("inf"), float("-inf")
    with backend.use(be):
        out = v1_response(q0, q1, noise=False)
        assert torch.equal(torch.isposinf(out), ~torch.isfinite(out))
        assert torch.isposinf(out[0, 3, 0, 0]) and torch.isposinf(out[1, 4, 1, 1])
        assert torch.isposinf(out[1, 4, 2, 2]) and int((~torch.isfinite(out)).sum()) == 3
        noisy, ref = v1_response(q0, q1, seed=3), reference(q0, q1, True)
        assert torch.equal(torch.isnan(noisy), torch.isnan(ref))
        assert torch.equal(torch.isposinf(noisy), torch.isposinf(ref))


# ----------------------------------------------------------------------------- autograd


def _away_from_kinks(q0, q1):
    # Keep the simple cells' relu and the complex cells' |q| off their kinks.
    q0 = torch.where(q0.abs() < 0.1, q0.sign() * 0.1 + q0, q0)
    return q0, q1 + 0.05


@pytest.mark.parametrize("noise", [False, True])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_gradcheck(noise, layout):
    q0, q1 = _away_from_kinks(*inputs(3, 2, torch.float64, layout, h=3, w=3))
    a, b = q0.requires_grad_(), q1.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda x, y: v1_response(x, y, seed=5, noise=noise, k_exc=2.0), (a, b))


def test_opcheck():
    q0, q1 = _away_from_kinks(*inputs(3, 2, torch.float32, "channels_last"))
    idx = torch.tensor([4, 9])
    fwd = torch.ops.robustops.v1_response.default
    torch.library.opcheck(fwd, (q0.requires_grad_(), q1.requires_grad_(), idx, K, S_, L_, True, 7))
    torch.library.opcheck(fwd, (q0.detach(), q1.detach(), None, K, S_, L_, False, 0))
    # No index with the noise on: sample b has index b (no index tensor is built).
    torch.library.opcheck(fwd, (q0.detach(), q1.detach(), None, K, S_, L_, True, 7))
    bwd = torch.ops.robustops.v1_response_backward.default
    go = torch.randn(q0.shape)
    torch.library.opcheck(bwd, (go, q0.detach(), q1.detach(), idx, K, S_, L_, True, 7))
    torch.library.opcheck(bwd, (go, q0.detach(), q1.detach(), None, K, S_, L_, True, 7))


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_op_without_index_draws_samples_0_to_b(layout):
    q0, q1 = inputs(3, 2, torch.float64, layout, batch=3)
    go = torch.randn(q0.shape, dtype=torch.float64)
    fwd = torch.ops.robustops.v1_response
    bwd = torch.ops.robustops.v1_response_backward
    arange = torch.arange(3)
    assert torch.equal(fwd(q0, q1, None, K, S_, L_, True, 5),
                       fwd(q0, q1, arange, K, S_, L_, True, 5))
    for a, b in zip(bwd(go, q0, q1, None, K, S_, L_, True, 5),
                    bwd(go, q0, q1, arange, K, S_, L_, True, 5)):
        assert torch.equal(a, b)


def test_compiles_fullgraph_forward_backward():
    torch._dynamo.reset()
    q0, q1 = inputs(3, 2, torch.float32)

    def f(a, b):
        return (v1_response(a, b, seed=2, index=4) * 0.5).square().sum()

    compiled = torch.compile(f, fullgraph=True)
    grads = []
    for fn in (compiled, f):
        a, b = q0.clone().requires_grad_(), q1.clone().requires_grad_()
        loss = fn(a, b)
        loss.backward()
        grads.append((loss.detach(), a.grad, b.grad))
    for c, e in zip(*grads):
        assert_close(c, e)


# ----------------------------------------------------------------------------- noise


def _rectified_normal_moments(mu: float, sigma: float) -> tuple[float, float]:
    """Mean and variance of relu(mu + sigma * N(0, 1))."""
    z = mu / sigma
    cdf = 0.5 * (1 + math.erf(z / math.sqrt(2)))
    pdf = math.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    m1 = mu * cdf + sigma * pdf
    m2 = (mu * mu + sigma * sigma) * cdf + mu * sigma * pdf
    return m1, m2 - m1 * m1


@pytest.mark.parametrize("x", [0.0, 0.3, 2.0, 10.0])
def test_noise_statistics(x):
    # Constant rate x in 4 simple and 4 complex channels: y = relu(x + sigma n) with
    # sigma = sqrt(s x + l + 1e-4) / s (s x + l > 0, so the inner relu never clips).
    shape = (16, 8, 32, 32)
    q0 = torch.full(shape, x / K, dtype=torch.float64)
    q1 = torch.full((16, 4, 32, 32), x / K, dtype=torch.float64)  # k sqrt(2 a^2)/sqrt(2) = k a
    for seed in (0, 1):
        y = v1_response(q0, q1, seed=seed, index=1000 * seed)
        n = y.numel()
        mean, var = _rectified_normal_moments(x, math.sqrt(S_ * x + L_ + 1e-4) / S_)
        se_mean = math.sqrt(var / n)
        assert abs(y.mean().item() - mean) < 5 * se_mean, (y.mean().item(), mean)
        assert abs(y.var().item() - var) < 5 * var * math.sqrt(2 / n) + 0.02 * var
        # Simple and complex channels carry the same statistics.
        assert abs(y[:, :4].mean().item() - y[:, 4:].mean().item()) < 10 * se_mean
    y_off = v1_response(q0, q1, noise=False)
    assert_close(y_off, torch.full(shape, x, dtype=torch.float64))
    assert not torch.equal(v1_response(q0, q1, seed=0), v1_response(q0, q1, seed=1))


def test_batch_split_invariance(kernel_backend):
    q0, q1 = inputs(3, 2, torch.float32, batch=8)
    full = v1_response(q0, q1, seed=9)
    parts = torch.cat([v1_response(q0[:3], q1[:3], seed=9, index=0),
                       v1_response(q0[3:], q1[3:], seed=9, index=3)])
    assert torch.equal(full, parts)
    perm = torch.tensor([6, 1, 4])
    assert torch.equal(v1_response(q0[perm], q1[perm], seed=9, index=perm), full[perm])
    assert torch.equal(v1_response(q0, q1, seed=9, index=torch.arange(8)), full)
    # The noise is keyed by the logical NCHW offset: channels_last gets the same values.
    cl = v1_response(*(t.contiguous(memory_format=torch.channels_last) for t in (q0, q1)), seed=9)
    assert_output_close(cl, full)
    q0, q1 = inputs(3, 2, torch.float32, batch=5, h=4, w=6)  # even plane: paired pixels
    full = v1_response(q0, q1, seed=9)
    assert torch.equal(torch.cat([v1_response(q0[:2], q1[:2], seed=9),
                                  v1_response(q0[2:], q1[2:], seed=9, index=2)]), full)
    cl = v1_response(*(t.contiguous(memory_format=torch.channels_last) for t in (q0, q1)), seed=9)
    assert_output_close(cl, full)


# ----------------------------------------------------------------------------- contract


def test_bad_inputs_raise_clear_errors():
    q0, q1 = inputs(3, 2, torch.float32)
    cases = [
        (dict(q0=q0[0]), "4-D"),
        (dict(q1=torch.randn(2, 6, 5, 3)), "Cc <= q0's channels"),
        (dict(q1=torch.randn(2, 2, 5, 4)), "same|q0's B, H, W"),
        (dict(q1=torch.randn(3, 2, 5, 3)), "q0's B, H, W"),
        (dict(q0=q0.to(torch.int32)), "float32"),
        (dict(q1=q1.double()), "dtype"),
        (dict(q1=q1.to("meta")), "on meta"),
        (dict(noise_scale=0.0), "noise_scale must be > 0"),
        (dict(noise_scale=-1.0), "noise_scale must be > 0"),
        (dict(noise_scale=float("nan")), "noise_scale must be a finite"),
        (dict(noise_level=float("inf")), "noise_level must be a finite"),
        (dict(index=torch.arange(3)), r"shape \(2,\)"),
        (dict(index=torch.zeros(2, 1, dtype=torch.int64)), r"shape \(2,\)"),
        (dict(index=-1), "index offset must be an int >= 0, got -1"),
    ]
    for kw, match in cases:
        args = dict(q0=q0, q1=q1)
        args.update(kw)
        with pytest.raises(ValueError, match=match):
            v1_response(args.pop("q0"), args.pop("q1"), **args)
    # A wrong type is a TypeError (the schema would take a bool for an int loosely).
    for kw, match in [(dict(k_exc="25"), "k_exc must be a finite number, got '25' \\(str\\)"),
                      (dict(noise=1), "noise must be a bool, got 1 \\(int\\)"),
                      (dict(seed=1.5), "seed must be an int, got 1.5 \\(float\\)"),
                      (dict(k_exc=True), "k_exc must be a finite number, got True")]:
        with pytest.raises(TypeError, match=match):
            v1_response(q0, q1, **kw)


def test_op_checks_its_index():
    # The op (no public wrapper in between) checks what the public function builds.
    q0, q1 = inputs(3, 2, torch.float32)
    op = torch.ops.robustops.v1_response
    with pytest.raises(ValueError, match=r"index must be an int64 tensor of shape \(2,\)"):
        op(q0, q1, torch.arange(3), K, S_, L_, True, 0)
    with pytest.raises(ValueError, match="index must be an int64 tensor"):
        op(q0, q1, torch.arange(2, dtype=torch.int32), K, S_, L_, True, 0)
    with pytest.raises(ValueError, match="index is on meta but q0 is on cpu"):
        op(q0, q1, torch.arange(2, device="meta"), K, S_, L_, True, 0)
    with pytest.raises(ValueError, match="noise_scale must be > 0, got -0.5"):
        op(q0, q1, None, K, -0.5, L_, True, 0)


def test_index_forms_and_large_seeds():
    q0, q1 = inputs(3, 2, torch.float32)
    base = v1_response(q0, q1, seed=2**70 + 3)
    assert torch.equal(base, v1_response(q0, q1, seed=2**70 + 3, index=0))
    assert torch.equal(base, v1_response(q0, q1, seed=2**70 + 3,
                                         index=torch.arange(2, dtype=torch.int32)))
    assert_output_close(base, reference(q0, q1, True, seed=2**70 + 3))
    assert (v1_response(q0, q1, noise=False) >= 0).all()


# ----------------------------------------------------------------------------- GPU


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("noise", [False, True])
def test_gpu_backend_matches_reference(be, dtype, layout, noise):
    q0, q1 = inputs(40, 24, dtype, layout, batch=3, h=17, w=13)
    q0, q1 = q0.cuda(), q1.cuda()
    idx = torch.tensor([5, 0, 2**40], device="cuda")
    ref = reference(q0, q1, noise, index=idx)
    go = torch.randn(ref.shape, device="cuda").to(dtype)
    r0, r1 = v1_response_backward_reference(go, q0, q1, K, S_, L_, noise, 3, idx)
    with backend.use(be):
        a, b = q0.clone().requires_grad_(), q1.clone().requires_grad_()
        out = v1_response(a, b, seed=3, noise=noise, index=idx)
        out.backward(go)
    assert_output_close(out, ref)
    assert_close(a.grad, r0)
    assert_close(b.grad, r1)
