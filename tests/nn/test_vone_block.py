"""VOneBlock: equal to VOneNet's dense formulation, noise keyed per sample, knobs checked."""
import pytest
import torch

from robustops.nn import VOneBlock
from robustops.nn.gabor_conv import GaborConvPlan
from robustops.nn.vone_block import dense_forward

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
