"""VOneBlock: equal to VOneNet's dense formulation and to the original's wiring, noise
keyed per sample, knobs checked."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from robustops import backend
from robustops.nn.gabor_parameters import sample_gabor_parameters
from robustops.nn import VOneBlock
from robustops.nn.gabor_conv import GaborConvPlan
from robustops.nn.vone_block import dense_forward, dense_weights
from robustops.testing import vonenet_gabor_kernel

SMALL = dict(image_size=64, ksize=13, stride=2, visual_degrees=4.0, simple_channels=24,
             complex_channels=40)


def _close(a, b):
    # fp32 convolutions of different shapes (grouped vs dense) round differently.
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * float(b.abs().max()))


@pytest.mark.parametrize("mode", ["off", "fixed"])
def test_equals_dense_formulation(mode):
    b = VOneBlock(noise_mode=mode, **SMALL)
    x = torch.rand(3, 3, 64, 64)
    out = b(x)
    assert out.shape == (3, 64, 32, 32) and out.min() >= 0
    _close(out, dense_forward(b, x))


def test_equals_dense_at_vonenet_size():
    b = VOneBlock(noise_mode="off")  # 256 + 256 channels, 25x25 stride 4 at 224 px
    x = torch.rand(1, 3, 224, 224)
    _close(b(x), dense_forward(b, x))


@pytest.mark.parametrize("channels", [(0, 32), (32, 0)])
def test_simple_or_complex_only(channels):
    b = VOneBlock(noise_mode="fixed", **{**SMALL, "simple_channels": channels[0],
                                         "complex_channels": channels[1]})
    x = torch.rand(2, 3, 64, 64)
    _close(b(x), dense_forward(b, x))


def test_noise_is_keyed_by_sample_not_batch():
    b = VOneBlock(noise_mode="fixed", noise_seed=5, **SMALL)
    x = torch.rand(6, 3, 64, 64)
    full = b(x)
    parts = torch.cat([b(x[:2]), b(x[2:], index=2)])
    _close(parts, full)
    # A different seed or a different sample index gives different noise.
    assert not torch.allclose(VOneBlock(noise_mode="fixed", noise_seed=6, **SMALL)(x), full)
    assert not torch.allclose(b(x, index=100), full)


def test_fresh_noise_is_stochastic_and_seedable():
    b = VOneBlock(noise_mode="fresh", **SMALL)
    x = torch.rand(2, 3, 64, 64)
    assert b.stochastic and not VOneBlock(noise_mode="fixed", **SMALL).stochastic
    assert not torch.equal(b(x), b(x))
    torch.manual_seed(0)
    a = b(x)
    torch.manual_seed(0)
    assert torch.equal(a, b(x))


def test_learnable_bank_trains_and_starts_equal():
    frozen = VOneBlock(noise_mode="off", **SMALL)
    learn = VOneBlock(noise_mode="off", learnable=True, **SMALL)
    x = torch.rand(2, 3, 64, 64)
    _close(learn(x), frozen(x))
    learn(x).square().mean().backward()
    for name in ("frequency", "sigma_x", "sigma_y", "theta", "phase"):
        g = getattr(learn, name).grad
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, name
    assert not any(p.requires_grad for p in frozen.parameters())


def test_input_gradient_matches_dense():
    b = VOneBlock(noise_mode="fixed", **SMALL)
    x = torch.rand(2, 3, 64, 64, dtype=torch.float32)
    xa = x.clone().requires_grad_(True)
    xb = x.clone().requires_grad_(True)
    w = torch.randn(2, 64, 32, 32)
    (b(xa) * w).sum().backward()
    (dense_forward(b, xb) * w).sum().backward()
    _close(xa.grad, xb.grad)


def test_parameters_follow_the_block_knobs():
    b = VOneBlock(sf_min=2.0, sf_max=6.0, gabor_seed=3, **SMALL)
    sf = b.biological["sf"]
    assert sf.min() >= 2.0 - 1e-6 and sf.max() <= 5.6 + 1e-6
    ppd = 64 / 4.0
    torch.testing.assert_close(b.frequency, (sf / ppd).float())
    again = VOneBlock(sf_min=2.0, sf_max=6.0, gabor_seed=3, **SMALL)
    assert torch.equal(again.weight, b.weight)
    other = VOneBlock(sf_min=2.0, sf_max=6.0, gabor_seed=4, **SMALL)
    assert not torch.equal(other.weight, b.weight)
    assert set(b.channel_of_filter.tolist()) <= {0, 1, 2}


def test_grouped_plan_places_every_filter_once():
    chn = torch.tensor([2, 0, 2, 1, 2, 0])
    plan = GaborConvPlan(chn, 3)
    assert plan.group == 3
    assert sorted(plan.slot.tolist()) == sorted(set(plan.slot.tolist()))
    assert torch.equal(plan.slot // plan.group, chn)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        GaborConvPlan(torch.tensor([0, 3]), 3)


def test_bad_input_and_knobs():
    b = VOneBlock(**SMALL)
    with pytest.raises(ValueError, match="1 channels"):
        b(torch.rand(2, 1, 64, 64))
    with pytest.raises(TypeError, match=r"\(B, C, H, W\)"):
        b(torch.rand(3, 64, 64))
    with pytest.raises(ValueError, match="noise_mode"):
        VOneBlock(noise_mode="neuronal")
    with pytest.raises(ValueError, match="ksize must be odd"):
        VOneBlock(ksize=24)
    with pytest.raises(ValueError, match="simple_channels"):
        VOneBlock(simple_channels=-1)
    with pytest.raises(ValueError, match="noise_scale"):
        VOneBlock(noise_scale=0.0)
    with pytest.raises(ValueError, match="must be > 0"):
        VOneBlock(simple_channels=0, complex_channels=0)
    # One-channel images (MNIST) work when the block is built for them.
    gray = VOneBlock(in_channels=1, noise_mode="off", **SMALL)
    assert gray(torch.rand(1, 1, 64, 64)).shape == (1, 64, 32, 32)


@pytest.mark.parametrize("knob", ["noise_scale", "noise_level", "k_exc", "visual_degrees"])
@pytest.mark.parametrize("value", ["0.3", None, True, float("nan")])
def test_real_knobs_named_in_errors(knob, value):
    # Not "must be real number, not str", and no string silently converted by float():
    # a wrong type is a TypeError, a non-finite number a ValueError.
    error = ValueError if isinstance(value, float) else TypeError
    with pytest.raises(error, match=f"VOneBlock: {knob} must be a finite real number"):
        VOneBlock(**{**SMALL, knob: value})
    for knob in ("gabor_seed", "noise_seed"):
        with pytest.raises(TypeError, match=f"VOneBlock: {knob} must be an int"):
            VOneBlock(**{knob: 1.5}, **SMALL)
    for seed in (-1, 2 ** 32, 2 ** 70):  # numpy's seed range, named as the block's knob
        with pytest.raises(ValueError,
                           match=r"VOneBlock: gabor_seed must be an int in \[0, 2\*\*32\)"):
            VOneBlock(gabor_seed=seed, **SMALL)
    for flag in ("learnable", "normalize"):
        with pytest.raises(TypeError, match=f"VOneBlock: {flag} must be a bool, got 1"):
            VOneBlock(**{flag: 1}, **SMALL)
    with pytest.raises(ValueError, match="quadrature_channels must be one of"):
        VOneBlock(quadrature_channels="shared", **SMALL)


@pytest.mark.parametrize("be", ["reference", "cpp", "triton"])
@pytest.mark.parametrize("mode", ["off", "fixed"])
def test_nan_pixel_gives_nan_output(be, mode):
    # A NaN pixel must not come out finite (v1_response's relu propagates NaN).
    if be not in backend.available():
        pytest.skip(f"backend {be} not available here")
    b = VOneBlock(noise_mode=mode, **SMALL)
    x = torch.rand(2, 3, 64, 64)
    x[1, 0, 10, 20] = float("nan")
    with backend.use(be):
        out = b(x)
    assert torch.isnan(out[1]).any() and not torch.isnan(out[0]).any()
    # Only the outputs whose receptive field holds the pixel (and reads its channel).
    clean = x.clone()
    clean[1, 0, 10, 20] = 0.5
    with backend.use(be):
        ref = b(clean)
    assert torch.equal(out[~torch.isnan(out)], ref[~torch.isnan(out)])


# ----------------------------------------------------------------------------- the original's wiring


class VOneNetGFB:
    """VOneNet's GFB (vonenet/modules.py), transcribed (weights kept in float64)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=4):
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = (kernel_size, kernel_size)
        self.stride = (stride, stride)
        self.padding = (kernel_size // 2, kernel_size // 2)
        self.weight = torch.zeros((out_channels, in_channels, kernel_size, kernel_size),
                                  dtype=torch.float64)

    def forward(self, x):
        return F.conv2d(x, self.weight, None, self.stride, self.padding)

    def initialize(self, sf, theta, sigx, sigy, phase):
        # torch's global generator, one draw per bank: the line this test is about.
        random_channel = torch.randint(0, self.in_channels, (self.out_channels,))
        for i in range(self.out_channels):
            self.weight[i, random_channel[i]] = vonenet_gabor_kernel(
                frequency=sf[i], sigma_x=sigx[i], sigma_y=sigy[i], theta=theta[i],
                offset=phase[i], ks=self.kernel_size[0], dtype=torch.float64)


class VOneNetBlock:
    """VOneNet's VOneBlock (vonenet/modules.py) built as its VOneNet() builder does
    (vonenet/vonenet.py: unit conversions), transcribed; noise_mode None (its noise_f is
    then a ReLU). The parameters come from sample_gabor_parameters, which
    tests/nn/test_gabor_parameters.py checks against generate_gabor_param."""

    def __init__(self, seed, simple_channels, complex_channels, image_size, visual_degrees,
                 ksize, stride, sf_max, k_exc=25):
        out_channels = simple_channels + complex_channels
        p = sample_gabor_parameters(out_channels, seed=seed, sf_corr=0.75, sf_max=sf_max)
        sf, theta, phase, nx, ny = (p[k].numpy() for k in ("sf", "theta", "phase", "nx", "ny"))
        ppd = image_size / visual_degrees
        sf = sf / ppd
        sigx = nx / sf
        sigy = ny / sf
        theta = theta / 180 * np.pi
        phase = phase / 180 * np.pi
        self.in_channels = 3
        self.simple_channels = simple_channels
        self.k_exc = k_exc
        self.simple_conv_q0 = VOneNetGFB(self.in_channels, out_channels, ksize, stride)
        self.simple_conv_q1 = VOneNetGFB(self.in_channels, out_channels, ksize, stride)
        self.simple_conv_q0.initialize(sf=sf, theta=theta, sigx=sigx, sigy=sigy, phase=phase)
        self.simple_conv_q1.initialize(sf=sf, theta=theta, sigx=sigx, sigy=sigy,
                                       phase=phase + np.pi / 2)

    def forward(self, x):  # gabors_f, then noise_f with noise_mode None (a ReLU)
        s_q0 = self.simple_conv_q0.forward(x)
        s_q1 = self.simple_conv_q1.forward(x)
        c = torch.sqrt(s_q0[:, self.simple_channels:, :, :] ** 2 +
                       s_q1[:, self.simple_channels:, :, :] ** 2) / np.sqrt(2)
        s = F.relu(s_q0[:, 0:self.simple_channels, :, :])
        return F.relu(self.k_exc * torch.cat((s, c), 1))


def build_original(seed, **kw):
    """The original block as its training script builds it: torch.manual_seed (its
    --torch_seed, here = gabor_seed) right before; the global generator is restored."""
    state = torch.get_rng_state()
    try:
        torch.manual_seed(seed)
        return VOneNetBlock(seed, **kw)
    finally:
        torch.set_rng_state(state)


@pytest.mark.parametrize("seed", [0, 7])
def test_colour_channels_match_the_original(seed):
    # The original draws the q1 bank's input channels independently of q0's: the
    # default reproduces its draws exactly, and its output (noise off).
    cfg = dict(simple_channels=24, complex_channels=40, image_size=64, visual_degrees=4.0,
               ksize=13, stride=2, sf_max=6.0)
    orig = build_original(seed, **cfg)
    ours = VOneBlock(gabor_seed=seed, noise_mode="off", **cfg)
    chn0 = orig.simple_conv_q0.weight.abs().sum((2, 3)).argmax(1)
    chn1 = orig.simple_conv_q1.weight.abs().sum((2, 3)).argmax(1)
    assert torch.equal(ours.channel_of_filter, chn0)
    assert torch.equal(ours.channel_of_quadrature_filter, chn1)
    assert not torch.equal(chn0[24:], chn1[24:])  # the pairs are not tied
    w0, w1 = dense_weights(ours)
    torch.testing.assert_close(w0.double(), orig.simple_conv_q0.weight, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(w1.double(), orig.simple_conv_q1.weight, rtol=1e-5, atol=1e-7)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(seed))
    expected = orig.forward((x.double() - 0.5) / 0.5)  # VOneNet normalises in its data
    out = ours(x)
    torch.testing.assert_close(out.double(), expected, rtol=1e-4,
                               atol=1e-5 * float(expected.abs().max()))
    _close(out, dense_forward(ours, x))


def test_tied_quadrature_channels_is_an_explicit_option():
    tied = VOneBlock(quadrature_channels="tied", noise_mode="off", **SMALL)
    default = VOneBlock(noise_mode="off", **SMALL)
    assert default.quadrature_channels == "independent"
    assert torch.equal(tied.channel_of_quadrature_filter, tied.channel_of_filter)
    assert torch.equal(tied.channel_of_filter, default.channel_of_filter)
    # About 2/3 of VOneNet's complex cells read two different colour channels.
    big = VOneBlock(simple_channels=0, complex_channels=3000, ksize=3, stride=1, image_size=8,
                    visual_degrees=1.0, noise_mode="off")
    differ = (big.channel_of_filter != big.channel_of_quadrature_filter).double().mean()
    assert abs(float(differ) - 2 / 3) < 0.03
    x = torch.rand(2, 3, 64, 64)
    _close(tied(x), dense_forward(tied, x))
    assert not torch.allclose(tied(x), default(x))


@pytest.mark.parametrize("learnable", [False, True])
def test_state_dict_carries_the_wiring(learnable):
    tied = VOneBlock(quadrature_channels="tied", noise_mode="off", learnable=learnable, **SMALL)
    x = torch.rand(2, 3, 64, 64)
    expected = tied(x).detach()
    block = VOneBlock(noise_mode="off", learnable=learnable, **SMALL)
    block.load_state_dict(tied.state_dict())
    _close(block(x).detach(), expected)
    # A state dict saved before the quadrature draw existed (version 1, no
    # channel_of_quadrature_filter) is a tied one.
    old = tied.state_dict()
    del old["channel_of_quadrature_filter"]
    old._metadata[""]["version"] = 1
    block = VOneBlock(noise_mode="off", learnable=learnable, **SMALL)
    block.load_state_dict(old)
    assert torch.equal(block.channel_of_quadrature_filter, block.channel_of_filter)
    _close(block(x).detach(), expected)
    # The current version requires the buffer.
    new = VOneBlock(noise_mode="off", learnable=learnable, **SMALL).state_dict()
    del new["channel_of_quadrature_filter"]
    with pytest.raises(RuntimeError, match="channel_of_quadrature_filter"):
        VOneBlock(noise_mode="off", learnable=learnable, **SMALL).load_state_dict(new)
