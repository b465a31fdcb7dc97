"""Noise, colour and digital corruptions against the reference (imagecorruptions 1.1.2).

Deterministic corruptions are compared value by value on the same uint8
images; tolerances are in 0-255 units:
  * brightness, contrast, saturate: 1e-3 -- the reference computes in float64,
    we in float32; nothing else differs (measured max ~1.2e-4);
  * pixelate, jpeg_compression: exact (we reproduce Pillow's resampling; JPEG goes
    through libjpeg-turbo via torchvision.io, as PIL's does); checked as <= 1e-3.
Random corruptions are compared by statistics of (out - in): mean and
standard deviation within 5 standard errors of the difference (standard errors
estimated from the samples), and for impulse noise the salt/pepper fractions
within 5 binomial standard errors of the reference's and of amount / 2.
"""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from robustops.bench import imagecorruptions_peer as corruption_oracle  # noqa: E402

from robustops.eval.corruptions import CORRUPTIONS, corrupt  # noqa: E402
from robustops.eval.corruptions.base import SampleRandom  # noqa: E402
from robustops.eval.corruptions.poisson import poisson_inverse, poisson_inverse_8bit  # noqa: E402

MINE = ("shot_noise", "impulse_noise", "speckle_noise", "brightness", "contrast", "saturate",
        "pixelate", "jpeg_compression")
DETERMINISTIC = ("brightness", "contrast", "saturate", "pixelate", "jpeg_compression")
RANDOM = ("shot_noise", "impulse_noise", "speckle_noise")
SEVERITIES = (1, 2, 3, 4, 5)
TOL_255 = {"brightness": 1e-3, "contrast": 1e-3, "saturate": 1e-3,
           "pixelate": 1e-3, "jpeg_compression": 1e-3}


def smooth_image(rs, h, w, c):
    """Natural-looking uint8 image (c, h, w): smooth random colour field plus mild texture,
    with some saturated regions (values beyond [0, 1] before clipping)."""
    lo = torch.tensor(rs.rand(1, c, max(2, h // 6), max(2, w // 6)) * 1.4 - 0.2)
    img = F.interpolate(lo, size=(h, w), mode="bicubic", align_corners=False)
    img = img + 0.05 * torch.tensor(rs.randn(1, c, h, w))
    return (img.clamp(0, 1) * 255).round().to(torch.uint8)[0]


def _images():
    rs = np.random.RandomState(1234)
    imgs = [smooth_image(rs, 32, 32, 3) for _ in range(3)]
    imgs.append(smooth_image(rs, 24, 40, 3))                      # non-square, 40 wide x 24 high
    imgs.append(torch.tensor(rs.randint(0, 256, (3, 32, 32)), dtype=torch.uint8))  # raw noise
    imgs += [smooth_image(rs, 32, 32, 1), smooth_image(rs, 24, 40, 1)]
    return imgs


IMAGES = _images()
# Odd sizes exercise the padding paths (JPEG blocks/MCUs, Pillow's pass order
# and NEAREST boundary cases); the reference functions accept them directly.
ODD_IMAGES = [smooth_image(np.random.RandomState(7), h, w, c)
              for (h, w, c) in ((35, 33, 3), (20, 13, 3), (64, 20, 3), (17, 50, 1), (9, 8, 1))]


def _hwc(img):
    a = img.permute(1, 2, 0).numpy()
    return a[..., 0] if a.shape[2] == 1 else a


def _ours_255(img, name, severity, seed=0):
    x = img[None].float() / 255
    out = corrupt(x, name, severity, seed=seed)[0].double().numpy() * 255
    return out[0] if img.shape[0] == 1 else out.transpose(1, 2, 0)


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("name", DETERMINISTIC)
def test_deterministic_match_reference(ic, name, severity):
    imgs = IMAGES + (ODD_IMAGES if name in ("pixelate", "jpeg_compression") else [])
    worst = 0.0
    for img in imgs:
        ref = corruption_oracle.reference(ic, _hwc(img), name, severity)
        ours = _ours_255(img, name, severity)
        assert ours.shape == ref.shape
        worst = max(worst, float(np.abs(ours - ref).max()))
    assert worst <= TOL_255[name], f"{name} s{severity}: max abs error {worst} (0-255)"


def _se_mean_std(d):
    """Sample mean, std and their standard errors (std's by the delta method)."""
    d = np.asarray(d, dtype=np.float64).ravel()
    n = d.size
    m, s = d.mean(), d.std()
    se_m = s / math.sqrt(n)
    se_s = np.sqrt(((d - m) ** 2).var() / n) / (2 * s) if s > 0 else 0.0
    return m, s, se_m, se_s


def _stat_images():
    gray = torch.full((3, 160, 160), 128, dtype=torch.uint8)
    rs = np.random.RandomState(99)
    tex = smooth_image(rs, 160, 160, 3)
    return {"gray128": gray, "smooth": tex}


STAT_IMAGES = _stat_images()


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("name", RANDOM)
def test_random_statistics_match_reference(ic, name, severity):
    for label, img in STAT_IMAGES.items():
        x255 = img.permute(1, 2, 0).numpy().astype(np.float64)
        ref = corruption_oracle.reference(ic, _hwc(img), name, severity, seed=severity) - x255
        ours = _ours_255(img, name, severity, seed=severity) - x255
        m1, s1, em1, es1 = _se_mean_std(ours)
        m2, s2, em2, es2 = _se_mean_std(ref)
        assert abs(m1 - m2) <= 5 * math.hypot(em1, em2) + 1e-9, \
            f"{name} s{severity} {label}: mean {m1:.4f} vs reference {m2:.4f}"
        assert abs(s1 - s2) <= 5 * math.hypot(es1, es2) + 1e-9, \
            f"{name} s{severity} {label}: std {s1:.4f} vs reference {s2:.4f}"


@pytest.mark.parametrize("severity", SEVERITIES)
def test_impulse_salt_pepper_fractions(ic, severity):
    amount = (0.03, 0.06, 0.09, 0.17, 0.27)[severity - 1]
    img = STAT_IMAGES["gray128"]
    ref = corruption_oracle.reference(ic, _hwc(img), "impulse_noise", severity)
    ours = _ours_255(img, "impulse_noise", severity, seed=3)
    n = ours.size
    se = math.sqrt(amount / 2 * (1 - amount / 2) / n)
    for value in (0.0, 255.0):
        f_ours = float(np.mean(np.isclose(ours, value)))
        f_ref = float(np.mean(np.isclose(ref, value)))
        assert abs(f_ours - amount / 2) <= 5 * se
        assert abs(f_ours - f_ref) <= 5 * math.sqrt(2) * se
    # Everything else is untouched.
    rest = ~(np.isclose(ours, 0) | np.isclose(ours, 255))
    assert np.allclose(ours[rest], 128, atol=1e-3)


def test_poisson_sampler_matches_poisson_pmf():
    """poisson_inverse turns counter uniforms into exact Poisson counts (chi-square-like check
    of every cell with expected count >= 20, within 5 standard errors)."""
    n = 200_000
    for lam in (0.3, 4.2, 37.5, 60.0):
        rng = SampleRandom(5, "poisson-test", 1, torch.arange(1))
        u = rng.uniform(n)[0]
        k = poisson_inverse(torch.full((n,), lam), u).long()
        counts = torch.bincount(k).double()
        ks = torch.arange(counts.numel(), dtype=torch.float64)
        pmf = torch.exp(ks * math.log(lam) - lam - torch.lgamma(ks + 1))
        expected = n * pmf
        cells = expected >= 20
        se = torch.sqrt(expected * (1 - pmf))
        assert (torch.abs(counts - expected)[cells] <= 5 * se[cells]).all(), lam
        assert abs(k.double().mean().item() - lam) <= 5 * math.sqrt(lam / n)


def _brute_force_poisson(lam, u, kmax=220):
    """Smallest k with CDF(k) >= u by summing the pmf from 0 (float64)."""
    k = torch.zeros_like(lam)
    p = torch.exp(-lam)
    cdf = p.clone()
    for j in range(1, kmax):
        k += (u > cdf).to(k.dtype)
        p = p * lam / j
        cdf = cdf + p
    return k


@pytest.mark.parametrize("photons", (60, 25, 12, 5, 3))
def test_poisson_8bit_grid_and_off_grid_paths(photons):
    """8-bit inputs (table path) invert the Poisson CDF exactly; off-grid inputs (gammaincc
    path) agree with the exact inverse except within float32 rounding of a CDF step."""
    n_rep = 600
    levels = torch.arange(256, dtype=torch.float32).repeat(n_rep)
    x_grid = levels / 255
    x_off = (x_grid * 0.9993 + 0.0003).clamp(0, 1)
    u = SampleRandom(11, "poisson-8bit", 1, torch.arange(1)).uniform(levels.numel())[0]
    k_grid = poisson_inverse_8bit(x_grid, photons, u)
    exact = _brute_force_poisson(levels.double() / 255 * photons, u.double())
    assert torch.equal(k_grid.double(), exact)
    k_off = poisson_inverse_8bit(x_off, photons, u)
    exact_off = _brute_force_poisson(x_off.double() * photons, u.double())
    assert (k_off.double() != exact_off).float().mean().item() < 1e-4
    # Mixed batches: each element takes its own path.
    mixed = torch.where(torch.arange(levels.numel()) % 3 == 0, x_off, x_grid)
    k_mixed = poisson_inverse_8bit(mixed, photons, u)
    assert torch.equal(k_mixed, torch.where(torch.arange(levels.numel()) % 3 == 0, k_off, k_grid))


def test_shot_noise_off_grid_batch_invariant_and_unbiased():
    rs = np.random.RandomState(8)
    x = torch.stack([smooth_image(rs, 32, 32, 3) for _ in range(4)]).float() / 255
    x[1::2] = (x[1::2] * 0.999 + 0.0004).clamp(0, 1)       # two images off the 8-bit grid
    out = corrupt(x, "shot_noise", 2, seed=4)
    for i in range(4):
        assert torch.equal(corrupt(x[i:i + 1], "shot_noise", 2, seed=4, index=i)[0], out[i])
    flat = torch.full((1, 3, 128, 128), 0.4003)
    d = (corrupt(flat, "shot_noise", 2, seed=5) - flat).double()
    n, lam = d.numel(), 0.4003 * 25
    assert abs(d.mean().item()) <= 5 * math.sqrt(lam / n) / 25
    assert abs(d.var().item() * 625 / lam - 1) <= 5 * math.sqrt(2 / n) * 1.2


def _batch(c):
    rs = np.random.RandomState(5)
    return torch.stack([smooth_image(rs, 32, 32, c) for _ in range(4)]).float() / 255


@pytest.mark.parametrize("name", MINE)
def test_registered(name):
    assert name in CORRUPTIONS


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("name", MINE)
@pytest.mark.parametrize("channels", (3, 1))
def test_properties(name, severity, channels):
    x = _batch(channels)
    out = corrupt(x, name, severity, seed=1)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    out64 = corrupt(x.double(), name, severity, seed=1)
    assert out64.dtype == torch.float64 and out64.shape == x.shape
    assert torch.equal(corrupt(x, name, severity, seed=1), out)               # reproducible
    for i in (0, 2, 3):                                       # batch-split invariant
        single = corrupt(x[i:i + 1], name, severity, seed=1, index=i)[0]
        assert torch.equal(single, out[i]), f"{name} s{severity}: sample {i} depends on its batch"
    if name in RANDOM:
        assert not torch.equal(corrupt(x, name, severity, seed=2), out)       # seed matters
        # Different samples get different noise even for identical images.
        same = corrupt(x[:1].expand(2, -1, -1, -1), name, severity, seed=1)
        assert not torch.equal(same[0], same[1])
    else:
        assert torch.equal(corrupt(x, name, severity, seed=2), out)           # seed-free
    if name in ("pixelate", "jpeg_compression"):                              # 8-bit outputs
        assert torch.equal(torch.round(out * 255) / 255, out)
