"""Blur-family corruptions and snow against the reference `imagecorruptions` 1.1.2.

Units: errors are stated in the reference's 0-255 scale (ours * 255).

- Deterministic corruptions (gaussian_blur, defocus_blur, zoom_blur) must match
  to 2e-3: ours runs in float32 (eps 6e-8 relative, i.e. ~1.5e-5 of 255 per
  operation, summed over up to 441 kernel taps or 16 zooms; observed <= 5e-4),
  the reference in float64.
- Random ones are compared exactly by giving the reference our random draws
  (numpy's random functions patched to return them): motion_blur and snow to
  2e-3 (float32 again; snow's 8-bit rounding of its layer could flip on a tie
  but does not on these images). glass_blur's pixel shuffle is reproduced
  exactly (the shuffle alone is compared bit for bit with the reference's loop
  on integer images). Its first blur is truncated to 8 bits: where the exact
  value is an 8-bit level (flat areas) the two float64 blurs may land on
  either side of it, one level apart (tested on its own), which the second
  blur turns into <= 1.0; so glass_blur allows 1.0 at <= 3 % of pixels (these
  images have flat clipped 0 / 255 areas) and 2e-3 elsewhere.
- With the reference's own numpy randomness, the output statistics (mean,
  std, mean absolute change) must agree over 16 images within 4-10 % (the
  observed spread from the different draws is <= 3.5 %).
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from robustops.bench import imagecorruptions_peer as corruption_oracle  # noqa: E402

from robustops.counter_rng import sample_index  # noqa: E402
from robustops.eval.corruptions import corrupt  # noqa: E402
from robustops.eval.corruptions import glass_blur as glass_mod  # noqa: E402
from robustops.eval.corruptions import motion_blur as motion_mod  # noqa: E402
from robustops.eval.corruptions import snow as snow_mod  # noqa: E402
from robustops.eval.corruptions import zoom_blur as zoom_mod  # noqa: E402
from robustops.eval.corruptions.base import SampleRandom  # noqa: E402
from robustops.eval.corruptions.defocus_blur import disk  # noqa: E402

NAMES = ("gaussian_blur", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "snow")
RANDOM = ("glass_blur", "motion_blur", "snow")
SEVERITIES = (1, 2, 3, 4, 5)
TOL = 2e-3            # 0-255 units, float32 vs float64
SHAPES = ((32, 32, 3), (40, 24, 3), (32, 32, 1), (40, 24, 1))


def smooth_images(n, h, w, c=3, seed=0):
    """(n, c, h, w) uint8 natural-looking images: smooth colour fields, texture,
    a little noise, with saturated (flat 0 / 255) areas from the clipping."""
    g = torch.Generator().manual_seed(seed)
    base = F.interpolate(torch.rand(n, c, 4, 4, generator=g) * 1.2 - 0.1, size=(h, w),
                         mode="bicubic", align_corners=False)
    tex = F.interpolate(torch.rand(n, c, h // 4, w // 4, generator=g), size=(h, w), mode="bilinear")
    x = (base + 0.15 * tex + 0.04 * torch.rand(n, c, h, w, generator=g)).clamp(0, 1)
    return (x * 255).round().to(torch.uint8)


def hwc(u8, i):
    """Image i of a (n, c, h, w) uint8 tensor as the reference takes it: HWC, or HW for gray."""
    a = u8[i].permute(1, 2, 0).numpy()
    return np.ascontiguousarray(a[..., 0] if a.shape[2] == 1 else a)


def as_nchw(refs, c):
    ref = np.stack(refs)
    return ref[:, None] if ref.ndim == 3 else ref.transpose(0, 3, 1, 2)[:, :c]


def draws(name, severity, batch, seed=0):
    """A SampleRandom keyed as `corrupt` keys it, to read our draws back."""
    return SampleRandom(seed, name, severity, sample_index(batch, None, torch.device("cpu")))


# ---------------------------------------------------------------- deterministic

@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("name", ("gaussian_blur", "defocus_blur", "zoom_blur"))
def test_deterministic_match_reference(ic, name, severity, shape):
    h, w, c = shape
    u8 = smooth_images(4, h, w, c, seed=severity + 10 * c)
    ours = corrupt(u8.float() / 255, name, severity).double().numpy() * 255
    if name == "gaussian_blur" and c == 1:
        # The reference blurs a 2-D array along one axis only (channel_axis=-1):
        # compare with its RGB result on the gray image repeated, channel 0.
        refs = [corruption_oracle.reference(ic, np.repeat(hwc(u8, i)[..., None], 3, 2), name,
                                            severity)[..., 0] for i in range(len(u8))]
    else:
        refs = [corruption_oracle.reference(ic, hwc(u8, i), name, severity) for i in range(len(u8))]
    ref = as_nchw(refs, c)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() < TOL


def test_disk_kernels_match_reference(ic):
    for radius, alias in ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5), (12, 0.3)):
        ref = ic.corruptions.disk(radius, alias)
        ours = disk(radius, alias).numpy()
        assert ours.shape == ref.shape
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-7)


def test_zoom_factors_are_numpys():
    ref = [np.arange(1, 1.11, 0.01), np.arange(1, 1.16, 0.01), np.arange(1, 1.21, 0.02),
           np.arange(1, 1.26, 0.02), np.arange(1, 1.31, 0.03)]
    for ours, r in zip(zoom_mod.ZOOMS, ref):
        assert len(ours) == len(r)
        assert all(a == b for a, b in zip(ours, r.tolist()))


def test_clipped_zoom_uncropped_matches_reference(ic):
    g = torch.Generator().manual_seed(3)
    for (h, w), z in (((32, 32), 3), ((32, 32), 4.5), ((40, 24), 2.5), ((9, 13), 1.07)):
        a = torch.randn(2, 1, h, w, generator=g, dtype=torch.float64)
        ours = zoom_mod.clipped_zoom(a, z, crop=False)
        for i in range(2):
            ref = ic.corruptions.clipped_zoom(a[i, 0].numpy()[..., None], z)[..., 0]
            assert ours.shape[-2:] == ref.shape
            np.testing.assert_allclose(ours[i, 0].numpy(), ref, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- motion blur

@pytest.mark.parametrize("radius,sigma", ((10, 3), (15, 5), (20, 15), (12, 8), (3, 1)))
def test_motion_blur_batch_matches_reference_helper(ic, radius, sigma):
    angles = [-135.0, -97.3, -45.0, -10.3, 0.0, 22.5, 44.99, 90.0]
    for h, w, c in ((32, 32, 3), (40, 24, 3), (12, 30, 1)):      # 12 rows: taps break early
        u8 = smooth_images(len(angles), h, w, c, seed=radius)
        ours = motion_mod.motion_blur_batch(u8.float() / 255, radius, sigma,
                                            torch.tensor(angles, dtype=torch.float64))
        ours = ours.double().numpy() * 255
        refs = [ic.corruptions._motion_blur(hwc(u8, i), radius=radius, sigma=sigma, angle=a)
                for i, a in enumerate(angles)]
        assert np.abs(ours - as_nchw(refs, c)).max() < TOL


def _fake_uniform(expected, values):
    it = iter(values)

    def uniform(low=0.0, high=1.0, size=None):
        assert (low, high) == expected and size is None
        return next(it)
    return uniform


@pytest.mark.parametrize("severity", SEVERITIES)
def test_motion_blur_matches_reference_with_our_angles(ic, monkeypatch, severity):
    for h, w in ((32, 32), (40, 24)):
        u8 = smooth_images(4, h, w, seed=severity)
        ours = corrupt(u8.float() / 255, "motion_blur", severity, seed=5).double().numpy() * 255
        angles = motion_mod.uniform_angle(draws("motion_blur", severity, 4, seed=5), -45.0, 45.0)
        monkeypatch.setattr(np.random, "uniform", _fake_uniform((-45, 45), angles.tolist()))
        ref = as_nchw([ic.corruptions.motion_blur(hwc(u8, i), severity) for i in range(4)], 3)
        monkeypatch.undo()
        assert np.abs(ours - ref).max() < TOL


# ---------------------------------------------------------------- snow

@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("severity", SEVERITIES)
def test_snow_matches_reference_with_our_draws(ic, monkeypatch, severity, shape):
    h, w, c = shape
    u8 = smooth_images(3, h, w, c, seed=severity)
    ours = corrupt(u8.float() / 255, "snow", severity, seed=7).double().numpy() * 255
    noise, angles = snow_mod.snow_draws(draws("snow", severity, 3, seed=7), h, w)
    refs = []
    for i in range(3):
        def normal(loc=0.0, scale=1.0, size=None, _i=i):
            assert tuple(size) == (h, w)
            return loc + scale * noise[_i].double().numpy()
        monkeypatch.setattr(np.random, "normal", normal)
        monkeypatch.setattr(np.random, "uniform", _fake_uniform((-135, -45), [angles[i].item()]))
        refs.append(np.asarray(ic.corruptions.snow(hwc(u8, i), severity), dtype=np.float64))
        monkeypatch.undo()
    assert np.abs(ours - as_nchw(refs, c)).max() < TOL


# ---------------------------------------------------------------- glass blur

@pytest.mark.parametrize("max_delta", (1, 2, 3, 4))
def test_glass_shuffle_is_the_reference_loop(max_delta):
    g = torch.Generator().manual_seed(max_delta)
    d = max_delta
    for h, w in ((20, 17), (9, 12)):
        v = torch.randint(0, 256, (3, 3, h, w), generator=g).to(torch.uint8)
        dy = torch.randint(-d, d, (3, 2, h, w), generator=g)
        dx = torch.randint(-d, d, (3, 2, h, w), generator=g)
        ours = glass_mod.glass_shuffle(v.float(), dy, dx, d).to(torch.uint8)
        for b in range(3):
            x = v[b].permute(1, 2, 0).numpy().copy()
            for it in range(2):          # the reference's statements, verbatim
                for hh in range(h - d, d, -1):
                    for ww in range(w - d, d, -1):
                        h_prime, w_prime = hh + int(dy[b, it, hh, ww]), ww + int(dx[b, it, hh, ww])
                        x[hh, ww], x[h_prime, w_prime] = x[h_prime, w_prime], x[hh, ww]
            assert np.array_equal(ours[b].permute(1, 2, 0).numpy(), x)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("severity", SEVERITIES)
def test_glass_blur_matches_reference_with_our_offsets(ic, monkeypatch, severity, shape):
    h, w, c = shape
    u8 = smooth_images(3, h, w, c, seed=severity + 20)
    ours = corrupt(u8.float() / 255, "glass_blur", severity, seed=3).double().numpy() * 255
    _, d, iterations = glass_mod.PARAMS[severity - 1]
    dy, dx = glass_mod.glass_offsets(draws("glass_blur", severity, 3, seed=3), iterations, h, w, d)
    refs = []
    for i in range(3):
        seq = iter([np.array([int(dx[i, k, hh, ww]), int(dy[i, k, hh, ww])])
                    for k in range(iterations)
                    for hh in range(h - d, d, -1) for ww in range(w - d, d, -1)])

        def randint(low, high=None, size=None, _seq=seq):
            assert (low, high, tuple(size)) == (-d, d, (2,))
            return next(_seq)
        monkeypatch.setattr(np.random, "randint", randint)
        # Gray images: the reference's 2-D path is a different algorithm (see
        # glass_blur.py); ours is its RGB one on one channel.
        img = hwc(u8, i) if c == 3 else np.repeat(hwc(u8, i)[..., None], 3, 2)
        refs.append(np.asarray(ic.corruptions.glass_blur(img, severity), dtype=np.float64))
        monkeypatch.undo()
        assert next(seq, None) is None
    err = np.abs(ours - as_nchw(refs, c))
    # Truncation ties (flat areas, see the test below) move a pixel by one 8-bit
    # level before the second blur: <= 1.0 after it, at a few percent of pixels
    # on these images (their clipped 0 / 255 areas are flat); elsewhere exact.
    assert err.max() <= 1.0
    assert (err > TOL).mean() <= 0.03


@pytest.mark.parametrize("severity", SEVERITIES)
def test_glass_truncation_differs_only_on_ties(severity):
    # The deterministic first half of glass_blur: np.uint8(gaussian(x) * 255).
    # Ours equals it except where the exact value is an 8-bit level (flat
    # areas), which the reference's float64 sums may leave a hair below or at
    # the level depending on sigma: there it may be one level apart.
    from skimage.filters import gaussian
    sigma = glass_mod.PARAMS[severity - 1][0]
    u8 = smooth_images(6, 32, 32, seed=40 + severity)
    ours = glass_mod.truncate_to_uint8(glass_mod.gaussian_blur_dw(u8.double() / 255, sigma))
    ours = (ours * 255).round().numpy()
    exact = np.stack([gaussian(hwc(u8, i) / 255.0, sigma=sigma, channel_axis=-1) * 255
                      for i in range(len(u8))]).transpose(0, 3, 1, 2)
    ref = np.uint8(exact).astype(np.float64)
    differ = ours != ref
    assert np.abs(ours - ref).max() <= 1
    assert (np.abs(exact[differ] - np.round(exact[differ])) < 1e-9).all()
    assert differ.mean() < 0.05


def test_glass_offsets_are_uniform_on_randints_range():
    for d in (1, 2, 3, 4):
        dy, dx = glass_mod.glass_offsets(draws("glass_blur", 1, 64), 2, 32, 32, d)
        for v in (dy, dx):
            counts = torch.bincount((v + d).flatten(), minlength=2 * d)
            assert counts.numel() == 2 * d                     # values in [-d, d - 1]
            expected = v.numel() / (2 * d)
            assert ((counts - expected).abs() < 5 * expected ** 0.5).all()
        # dy and dx independent: every pair equally likely
        pairs = torch.bincount(((dy + d) * 2 * d + dx + d).flatten(), minlength=4 * d * d)
        expected = dy.numel() / (4 * d * d)
        assert ((pairs - expected).abs() < 5 * expected ** 0.5).all()


# ---------------------------------------------------------------- statistics with numpy's randomness

@pytest.mark.parametrize("name", RANDOM)
def test_statistics_match_reference_own_randomness(ic, name):
    u8 = smooth_images(16, 32, 32, seed=11)
    x = u8.double().numpy()
    for severity in SEVERITIES:
        ours = corrupt(u8.float() / 255, name, severity, seed=2).double().numpy() * 255
        ref = as_nchw([corruption_oracle.reference(ic, hwc(u8, i), name, severity, seed=i)
                       for i in range(16)], 3)
        change_o, change_r = np.abs(ours - x).mean(), np.abs(ref - x).mean()
        assert abs(change_o - change_r) <= 0.10 * change_r, (severity, change_o, change_r)
        assert abs(ours.mean() - ref.mean()) <= 0.04 * ref.mean(), severity
        assert abs(ours.std() - ref.std()) <= 0.10 * ref.std(), severity


def test_motion_angles_in_reference_ranges():
    a = motion_mod.uniform_angle(draws("motion_blur", 1, 4096), -45.0, 45.0)
    assert a.dtype == torch.float64 and a.min() >= -45 and a.max() < 45
    assert abs(a.mean().item()) < 2 and a.std().item() == pytest.approx(90 / 12 ** 0.5, rel=0.05)
    _, b = snow_mod.snow_draws(draws("snow", 1, 4096), 8, 8)
    assert b.min() >= -135 and b.max() < -45


# ---------------------------------------------------------------- common properties

@pytest.fixture(scope="module")
def batch():
    return smooth_images(6, 32, 32, seed=99).float() / 255


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("name", NAMES)
def test_shape_dtype_range_reproducible_split_invariant(batch, name, severity):
    x = batch
    out = corrupt(x, name, severity, seed=1)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert not torch.equal(out, x)
    assert torch.equal(corrupt(x, name, severity, seed=1), out)
    out64 = corrupt(x.double(), name, severity, seed=1)
    assert out64.dtype == torch.float64
    torch.testing.assert_close(out64, out.double(), rtol=0, atol=0)
    for i in (0, 3, 5):
        one = corrupt(x[i:i + 1], name, severity, seed=1, index=i)
        assert torch.equal(one[0], out[i])
    part = corrupt(x[2:5], name, severity, seed=1, index=2)
    assert torch.equal(part, out[2:5])
    other = corrupt(x, name, severity, seed=2)
    if name in RANDOM:
        assert not torch.equal(other, out)
        assert all(not torch.equal(other[i], out[i]) for i in range(len(x)))
    else:
        assert torch.equal(other, out)


@pytest.mark.parametrize("name", NAMES)
def test_grayscale_small_and_odd_sizes(name):
    g = torch.Generator().manual_seed(0)
    for shape in ((2, 1, 8, 8), (2, 3, 8, 8), (3, 1, 9, 13), (2, 3, 17, 11)):
        x = torch.rand(*shape, generator=g)
        for severity in SEVERITIES:
            out = corrupt(x, name, severity, seed=4)
            assert out.shape == x.shape and out.dtype == torch.float32
            assert out.min() >= 0 and out.max() <= 1
            assert torch.equal(corrupt(x[1:], name, severity, seed=4, index=1), out[1:])


@pytest.mark.parametrize("name", ("gaussian_blur", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur"))
def test_gray_is_each_rgb_channel(name):
    # A 1-channel image gets what each channel of an RGB image gets (snow mixes
    # channels through the gray level, so it is not channel-wise).
    x = smooth_images(4, 24, 20, seed=8).float() / 255
    rgb = corrupt(x, name, 3, seed=6)
    for ch in range(3):
        gray = corrupt(x[:, ch:ch + 1].contiguous(), name, 3, seed=6)
        torch.testing.assert_close(gray, rgb[:, ch:ch + 1], rtol=0, atol=1e-6)
