"""gabor_bank: VOneNet's gabor_kernel, every backend against the reference, the op contract."""
import math

import numpy as np
import pytest
import torch

from robustops import backend, gabor_bank
from robustops.nn.gabor_parameters import gabor_filter_parameters, sample_gabor_parameters
from robustops.ops.gabor_bank import _gabor_bank_backward_reference, gabor_bank_reference
from robustops.testing import assert_close, vonenet_gabor_kernel

NAMES = ("frequency", "sigma_x", "sigma_y", "theta", "phase")


def vonenet_params(n, seed=0, dtype=torch.float64, **kw):
    """The five op parameters of n VOneNet channels (biological sampling, 224 px over 8 deg)."""
    p = gabor_filter_parameters(sample_gabor_parameters(n, seed=seed, **kw))
    return [p[k].to(dtype) for k in NAMES]


def random_params(n, seed=0, dtype=torch.float64):
    """Wider ranges than VOneNet's: tiny and huge envelopes, negative angles, f up to 0.5."""
    g = torch.Generator().manual_seed(seed)
    f = torch.rand(n, generator=g, dtype=torch.float64) * 0.5
    sx = 0.3 + 8 * torch.rand(n, generator=g, dtype=torch.float64)
    sy = 0.3 + 8 * torch.rand(n, generator=g, dtype=torch.float64)
    th = (torch.rand(n, generator=g, dtype=torch.float64) - 0.5) * 4 * math.pi
    ph = (torch.rand(n, generator=g, dtype=torch.float64) - 0.5) * 4 * math.pi
    return [t.to(dtype) for t in (f, sx, sy, th, ph)]


# ----------------------------------------------------------------------------- reference


def test_reference_matches_vonenet_gabor_kernel_fp64():
    params = vonenet_params(24, seed=1)
    ref = gabor_bank_reference(*params, 25)
    for i in range(24):
        f, sx, sy, th, ph = (float(t[i]) for t in params)
        expected = vonenet_gabor_kernel(f, sx, sy, th, ph, 25, dtype=torch.float64)
        torch.testing.assert_close(ref[i], expected, rtol=1e-9, atol=1e-12)


def test_reference_matches_vonenet_gabor_kernel_fp32():
    # VOneNet computes in float32; the reference rounds a float64 result once, so the
    # two differ by VOneNet's float32 rounding (cosine arguments up to ~50 rad).
    params = vonenet_params(24, seed=2)
    ref = gabor_bank_reference(*[t.float() for t in params], 25)
    for i in range(24):
        f, sx, sy, th, ph = (float(t[i]) for t in params)
        expected = vonenet_gabor_kernel(f, sx, sy, th, ph, 25)
        assert expected.dtype == torch.float32
        torch.testing.assert_close(ref[i], expected, rtol=1e-4,
                                   atol=2e-5 * float(expected.abs().max()))


def test_orientation_convention_rows_are_x():
    # theta = 0: the carrier runs along x = the row offset (dim 0), the envelope's
    # sigma_x along the rows too. ksize 3, by hand.
    f, sx, sy, ph = 0.125, 1.5, 4.0, 0.3
    out = gabor_bank_reference(*(torch.tensor([v], dtype=torch.float64)
                                 for v in (f, sx, sy, 0.0, ph)), 3)[0]
    n = 1 / (2 * math.pi * sx * sy)
    assert math.isclose(out[2, 1], n * math.exp(-0.5 / sx ** 2) * math.cos(2 * math.pi * f + ph))
    assert math.isclose(out[1, 2], n * math.exp(-0.5 / sy ** 2) * math.cos(ph))
    assert math.isclose(out[1, 1], n * math.cos(ph))


def test_reference_backward_matches_autograd():
    params = [t.requires_grad_() for t in random_params(6, seed=3)]
    go = torch.randn(6, 9, 9, dtype=torch.float64)
    auto = torch.autograd.grad(gabor_bank_reference(*params, 9), params, go)
    analytic = _gabor_bank_backward_reference(go, *[t.detach() for t in params])
    for a, b, name in zip(analytic, auto, NAMES):
        assert_close(a, b, name)


# ----------------------------------------------------------------------------- backends


def _backward_op(be):
    """The backward op that backend `be` runs (Triton's is a Python custom op)."""
    if be == "triton":
        return torch.ops.robustops.gabor_bank_backward_triton
    return torch.ops.robustops.gabor_bank_backward


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("ksize", [1, 7, 25])
@pytest.mark.parametrize("kind", ["vonenet", "random"])
def test_backend_matches_reference(kernel_backend, dtype, ksize, kind):
    params = (vonenet_params(5, seed=4, dtype=dtype) if kind == "vonenet"
              else random_params(5, seed=4, dtype=dtype))
    out = gabor_bank(*params, ksize)
    assert out.shape == (5, ksize, ksize) and out.dtype == dtype
    assert_close(out, gabor_bank_reference(*params, ksize), kernel_backend)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("ksize", [1, 25, 33])
def test_backend_backward_matches_reference(kernel_backend, dtype, ksize):
    # ksize 33: 1089 elements, more than one Triton block (1024) per filter.
    params = vonenet_params(4, seed=5, dtype=dtype)
    go = torch.randn(4, ksize, ksize, dtype=torch.float64).to(dtype)
    grads = _backward_op(kernel_backend)(go, *params)
    expected = _gabor_bank_backward_reference(go, *params)
    for a, b, name in zip(grads, expected, NAMES):
        assert a.shape == (4,) and a.dtype == dtype
        assert_close(a, b, f"{kernel_backend} d/d{name}")
    # Through autograd, with a non-contiguous grad_out.
    leaves = [t.clone().requires_grad_() for t in params]
    go_t = go.transpose(1, 2).contiguous().transpose(1, 2)
    ours = torch.autograd.grad(gabor_bank(*leaves, ksize), leaves, go_t)
    for a, b in zip(ours, expected):
        assert_close(a, b)


def test_backend_strided_params_and_empty_bank(kernel_backend):
    table = torch.stack(random_params(6, seed=6), dim=1)  # (F, 5): columns are strided
    params = [table[:, j] for j in range(5)]
    assert not params[0].is_contiguous()
    assert_close(gabor_bank(*params, 7), gabor_bank_reference(*params, 7))
    empty = [t[:0] for t in params]
    out = gabor_bank(*empty, 7)
    assert out.shape == (0, 7, 7)
    leaves = [t.clone().requires_grad_() for t in empty]
    grads = torch.autograd.grad(gabor_bank(*leaves, 7).sum(), leaves)
    assert all(g.shape == (0,) for g in grads)


@pytest.mark.parametrize("be", ["reference", "cpp", "triton"])
def test_gradcheck_fp64(be):
    if be not in backend.available():
        pytest.skip(f"{be} not available")
    params = [t.requires_grad_() for t in vonenet_params(3, seed=7)]
    # The interpreter runs ~1 ms per program: Triton gets gradcheck's fast mode
    # (random projections instead of one backward per output element).
    with backend.use(be):
        assert torch.autograd.gradcheck(lambda *p: gabor_bank(*p, 7), params, eps=1e-6,
                                        atol=1e-7, rtol=1e-5, fast_mode=be == "triton")


# ----------------------------------------------------------------------------- op contract


@pytest.mark.parametrize("requires_grad", [False, True])
def test_opcheck(requires_grad):
    params = [t.requires_grad_(requires_grad) for t in vonenet_params(4, seed=8)]
    torch.library.opcheck(torch.ops.robustops.gabor_bank.default, (*params, 7))
    go = torch.randn(4, 7, 7, dtype=torch.float64)
    torch.library.opcheck(torch.ops.robustops.gabor_bank_backward.default,
                          (go, *[t.detach() for t in params]))


def test_compiles_fullgraph():
    torch._dynamo.reset()
    params = vonenet_params(4, seed=9, dtype=torch.float32)

    def quadrature(f, sx, sy, th, ph):
        q0 = gabor_bank(f, sx, sy, th, ph, 9)
        q1 = gabor_bank(f, sx, sy, th, ph + math.pi / 2, 9)
        return torch.cat([q0, q1]).unsqueeze(1)

    compiled = torch.compile(quadrature, fullgraph=True)
    assert_close(compiled(*params), quadrature(*params))


def _bad_cases():
    f, sx, sy, th, ph = random_params(3, seed=10)
    nan = sx.clone()
    nan[1] = float("nan")
    return [
        ("int dtype", dict(theta=torch.zeros(3, dtype=torch.int64)), "theta has dtype"),
        ("half", dict(phase=ph.half()), "float32 or float64"),
        ("2-D", dict(sigma_x=sx[None]), r"sigma_x must be 1-D \(F,\)"),
        ("0-d", dict(frequency=f[0]), "frequency must be 1-D"),
        ("length", dict(sigma_y=sy[:2]), "sigma_y has 2 values but frequency has 3"),
        ("mixed dtype", dict(theta=th.float()), "must share one dtype"),
        ("device", dict(phase=ph.to("meta")), "phase is on meta"),
        ("even ksize", dict(ksize=8), "odd int >= 1"),
        ("zero ksize", dict(ksize=0), "odd int >= 1"),
        # A wrong type is a TypeError (the schema's int would take the bool).
        ("float ksize", dict(ksize=7.0), r"ksize must be an odd int >= 1, got 7.0 \(float\)",
         TypeError),
        ("bool ksize", dict(ksize=True), r"ksize must be an odd int >= 1, got True \(bool\)",
         TypeError),
        ("nan sigma", dict(sigma_x=nan), r"sigma_x must be finite and > 0; sigma_x\[1\] = nan"),
        ("zero sigma", dict(sigma_y=torch.tensor([1.0, 0.0, 2.0], dtype=torch.float64)),
         r"sigma_y\[1\] = 0.0"),
        ("negative sigma", dict(sigma_x=-sx), "sigma_x must be finite and > 0"),
        ("inf frequency", dict(frequency=torch.tensor([0.1, 0.2, math.inf], dtype=torch.float64)),
         r"frequency must be finite; frequency\[2\] = inf"),
        ("nan phase", dict(phase=torch.full((3,), math.nan, dtype=torch.float64)),
         "phase must be finite"),
    ]


@pytest.mark.parametrize("case", _bad_cases(), ids=lambda c: c[0])
@pytest.mark.parametrize("be", ["reference", "cpp"])
def test_bad_input_raises_clear_error(case, be):
    if be not in backend.available():
        pytest.skip(f"{be} not available")
    _, override, match, *error = case
    f, sx, sy, th, ph = random_params(3, seed=10)
    args = dict(frequency=f, sigma_x=sx, sigma_y=sy, theta=th, phase=ph, ksize=7)
    args.update(override)
    with backend.use(be), pytest.raises(error[0] if error else ValueError, match=match):
        gabor_bank(**args)


# ----------------------------------------------------------------------------- GPU


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gpu_backend_matches_reference(be, dtype):
    # A full VOneNet bank (512 filters, 25 x 25) plus one filter larger than a block.
    for n, ksize in ((512, 25), (3, 65)):
        params = [t.cuda() for t in vonenet_params(n, seed=11, dtype=dtype)]
        go = torch.randn(n, ksize, ksize, dtype=dtype, device="cuda")
        with backend.use(be):
            out = gabor_bank(*params, ksize)
            grads = _backward_op(be)(go, *params)
        assert_close(out, gabor_bank_reference(*params, ksize), f"{be} forward")
        for a, b, name in zip(grads, _gabor_bank_backward_reference(go, *params), NAMES):
            assert_close(a, b, f"{be} d/d{name}")


@pytest.mark.cuda
def test_gpu_bad_sigma_raises():
    params = [t.cuda() for t in random_params(3, seed=12)]
    params[1][0] = -1.0
    with pytest.raises(ValueError, match=r"sigma_x must be finite and > 0; sigma_x\[0\] = -1.0"):
        gabor_bank(*params, 7)
