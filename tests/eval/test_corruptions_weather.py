"""fog, frost, spatter, elastic_transform against imagecorruptions 1.1.2.

The four are random, so the comparisons are of three kinds:
- replay: the reference function runs with numpy.random replaced by a stand-in
  that serves *our* per-sample draws (same seed / corruption / severity /
  index) in the reference's draw order, so both compute the same corruption and
  the outputs must agree pixel for pixel (to float rounding; frost to OpenCV's
  bicubic rounding, spatter to OpenCV's float summation order);
- deterministic sub-steps against the library routine they replace (OpenCV's
  Canny / distanceTransform / equalizeHist / resize, scipy's map_coordinates
  and gaussian_filter, the reference's blend given the same fractal or crop);
- statistics with independent randomness: per severity, the mean over images of
  the output's mean, its std, and the mean absolute change, within sampling
  tolerance.
Plus the library-wide properties: shape, dtype, range, seed reproducibility,
seed sensitivity and batch-split invariance.
"""
import os
import time
import types

import numpy as np
import pytest
import torch


from robustops.eval.corruptions import corrupt  # noqa: E402
from robustops.eval.corruptions import elastic_transform as elastic_mod  # noqa: E402
from robustops.eval.corruptions import fog as fog_mod  # noqa: E402
from robustops.eval.corruptions import frost as frost_mod  # noqa: E402
from robustops.eval.corruptions import spatter as spatter_mod  # noqa: E402
from robustops.eval.corruptions.base import SampleRandom  # noqa: E402

NAMES = ("fog", "frost", "spatter", "elastic_transform")
SEVERITIES = (1, 2, 3, 4, 5)


def images(n, h=32, w=32, seed=0):
    """(n, h, w, 3) uint8 smooth colour patterns with a noise texture and a flat disc."""
    rs = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for _ in range(n):
        u, v = yy / max(h, w), xx / max(h, w)
        base = np.stack([np.sin(6 * rs.rand() * v + 6 * rs.rand()) * np.cos(5 * rs.rand() * u)
                         for _ in range(3)], -1)
        img = 0.5 + 0.35 * base + 0.08 * rs.randn(h, w, 3)
        cy, cx, r = rs.randint(h), rs.randint(w), rs.randint(4, 12)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rs.rand(3)
        out.append((np.clip(img, 0, 1) * 255).round().astype(np.uint8))
    return np.stack(out)


def to_tensor(batch, gray=False):
    x = torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255
    return x[:, :1].contiguous() if gray else x


def chw(ref):
    """Reference output (H, W[, 3]) 0-255 -> (C, H, W) in [0, 1]."""
    ref = np.asarray(ref, dtype=np.float64) / 255
    return ref[None] if ref.ndim == 2 else ref.transpose(2, 0, 1)


def ref_input(name, img):
    from PIL import Image
    return Image.fromarray(img) if name == "spatter" else img  # mud needs x_PIL.convert


# ------------------------------------------------------------------ replaying our draws


class Replay:
    """numpy.random for a copy of a reference function: serves one sample's draws of ours.

    Same mappings as the implementations: uniform(a, b) = a + (b - a) u,
    normal = ndtri(u) (spatter), randint(n) = floor(u n) (frost), one draw per call.
    """

    def __init__(self, seed, name, severity, index):
        self.rng = SampleRandom(seed, name, severity, torch.tensor([index]))

    def uniform(self, low=0.0, high=1.0, size=None):
        u = self.rng.uniform(*tuple(size))[0].double().numpy()
        return low + (high - low) * u

    def normal(self, loc=0.0, scale=1.0, size=None):
        z = torch.special.ndtri(self.rng.uniform(*tuple(size))[0]).double().numpy()
        return loc + scale * z

    def randint(self, low, high=None):
        if high is None:
            low, high = 0, low
        u = float(self.rng.per_sample_uniform()[0].double())
        return low + min(int(np.floor(u * (high - low))), high - low - 1)


class _NumpyWith:
    def __init__(self, random):
        self.random = random

    def __getattr__(self, name):
        return getattr(np, name)


def reference_with(ic, name, random=None, **overrides):
    """The reference function `name` with its module globals patched (np.random, helpers)."""
    g = dict(vars(ic.corruptions))
    if random is not None:
        g["np"] = _NumpyWith(random)
    pf = ic.corruptions.plasma_fractal
    g["plasma_fractal"] = types.FunctionType(pf.__code__, g, pf.__name__, pf.__defaults__)
    g.update(overrides)
    f = getattr(ic.corruptions, name)
    return types.FunctionType(f.__code__, g, f.__name__, f.__defaults__)


# (max abs difference allowed on every image, on the mean over images) in [0, 1] units.
REPLAY_TOL = {
    "fog": (1e-5, 1e-6),
    "elastic_transform": (2e-5, 1e-6),
    # one grey level of OpenCV's fixed-point bicubic resize, times c1 <= 0.75
    "frost": (0.75 * 1.01 / 255, 2e-5),
    # max: a rare float-order flip in the distance transform may move one uint8 level
    "spatter": (0.05, 2e-5),
}


@pytest.mark.parametrize("gray", [False, True], ids=["rgb", "gray"])
@pytest.mark.parametrize("name", NAMES)
def test_replay_matches_reference(ic, name, gray):
    if name == "frost" and frost_mod.frost_source() != "imagecorruptions":
        pytest.skip("frost photographs not available")
    batches = [images(6, 32, 32, seed=1), images(2, 40, 48, seed=2)]
    worst = []
    for s in SEVERITIES:
        for batch in batches:
            x = to_tensor(batch, gray)
            ours = corrupt(x, name, s, seed=5).numpy()
            for i, img in enumerate(batch):
                im = img[..., 0] if gray else img
                ref = chw(reference_with(ic, name, Replay(5, name, s, i))(ref_input(name, im), s))
                assert ref.shape == ours[i].shape
                if np.isnan(ref).any():  # spatter: no liquid at all, the reference divides 0 by 0
                    assert name == "spatter" and np.array_equal(ours[i], x[i].numpy())
                    continue
                worst.append(np.abs(ours[i] - ref))
    max_tol, mean_tol = REPLAY_TOL[name]
    assert max(d.max() for d in worst) <= max_tol
    assert np.mean([d.mean() for d in worst]) <= mean_tol
    if name == "spatter":  # nearly every image exact to float rounding
        assert np.mean([d.max() <= 1e-5 for d in worst]) >= 0.95


# ------------------------------------------------------------------ deterministic sub-steps


def test_fog_fractal_and_blend(ic):
    rng_ours = SampleRandom(2, "fog", 3, torch.arange(4))
    frac = fog_mod.plasma_fractal(rng_ours, 32, 1.7)
    assert frac.shape == (4, 32, 32) and float(frac.min()) == 0.0 and float(frac.max()) == 1.0
    for i in range(4):
        g = dict(vars(ic.corruptions))
        g["np"] = _NumpyWith(Replay(2, "fog", 3, i))
        pf = types.FunctionType(ic.corruptions.plasma_fractal.__code__, g)
        np.testing.assert_allclose(frac[i].numpy(), pf(mapsize=32, wibbledecay=1.7), atol=2e-6)
    # the blend, given the same fractal (non-square image: the fractal is cropped)
    batch = images(4, 40, 48, seed=3)
    big = fog_mod.plasma_fractal(SampleRandom(1, "fog", 1, torch.arange(4)), 64, 2.0)
    for s in SEVERITIES:
        ours = fog_mod.fog_blend(to_tensor(batch), big, s).numpy()
        for i in range(4):
            ref = reference_with(ic, "fog", plasma_fractal=lambda mapsize, wibbledecay, f=big[i]:
                                 f.double().numpy())(batch[i], s)
            np.testing.assert_allclose(ours[i], chw(ref), atol=1e-6)


def test_frost_resize_crop_and_blend(ic):
    import cv2

    assert frost_mod.frost_source() == "imagecorruptions"
    folder = frost_mod._frost_dir()
    photos = frost_mod._sources()[1]
    for k, f in enumerate(frost_mod.FILES):
        bgr = cv2.imread(os.path.join(folder, f))
        np.testing.assert_array_equal(photos[k].permute(1, 2, 0).numpy(), bgr[..., ::-1])
        for hw in [(32, 32), (700, 40), (40, 1000)]:  # frost larger; taller; wider than the photo
            sh = frost_mod.rescaled_shape(bgr.shape[:2], hw)
            assert sh[0] > hw[0] and sh[1] > hw[1]
        sh = frost_mod.rescaled_shape(bgr.shape[:2], (32, 32))
        ref = cv2.resize(bgr, dsize=(sh[1], sh[0]), interpolation=cv2.INTER_CUBIC)[..., ::-1]
        d = np.abs(frost_mod.resize_cubic(photos[k], sh).permute(1, 2, 0).numpy().astype(int)
                   - ref.astype(int))
        assert d.max() <= 1 and (d > 0).mean() < 1e-3
    # the blend given the same crop
    batch = images(3)
    crop = frost_mod.frost_crops(SampleRandom(0, "frost", 1, torch.arange(3)), 32, 32)
    assert crop.shape == (3, 3, 32, 32)
    for s in SEVERITIES:
        c0, c1 = frost_mod.FROST[s - 1]
        ours = frost_mod.frost_blend(to_tensor(batch), crop, s).numpy()
        ref = np.clip(c0 * batch + c1 * crop.permute(0, 2, 3, 1).numpy(), 0, 255).transpose(0, 3, 1, 2) / 255
        np.testing.assert_allclose(ours, ref, atol=1e-6)
        gray = frost_mod.frost_blend(to_tensor(batch, True), crop, s).numpy()
        crop_bgr = crop.permute(0, 2, 3, 1).numpy()[..., ::-1]
        ref_g = np.clip(c0 * batch[..., 0] + c1 * ic.corruptions.rgb2gray(crop_bgr), 0, 255) / 255
        np.testing.assert_allclose(gray[:, 0], ref_g, atol=1e-6)


def test_elastic_blur_and_warp_vs_scipy(ic):
    from scipy.ndimage import gaussian_filter, map_coordinates

    rs = np.random.RandomState(0)
    f = rs.uniform(-1, 1, (3, 37, 29))
    for sigma in [(0.37, 0.29), (2.24, 1.5), (5.0, 7.0)]:
        ours = elastic_mod.gaussian_reflect(torch.from_numpy(f).float(), sigma).numpy()
        for i in range(3):
            ref = gaussian_filter(f[i], sigma, mode="reflect", truncate=3)
            np.testing.assert_allclose(ours[i], ref, atol=2e-6)
    img = rs.rand(2, 3, 37, 29).astype(np.float32)
    for scale in [0.5, 5.0, 60.0]:  # up to far outside the image
        dx = rs.uniform(-scale, scale, (2, 37, 29)).astype(np.float32)
        dy = rs.uniform(-scale, scale, (2, 37, 29)).astype(np.float32)
        ours = elastic_mod.warp(torch.from_numpy(img), torch.from_numpy(dx), torch.from_numpy(dy)).numpy()
        y, x = np.meshgrid(np.arange(37), np.arange(29), indexing="ij")
        for b in range(2):
            for c in range(3):
                ref = map_coordinates(img[b, c], (y + dy[b], x + dx[b]), order=1, mode="reflect")
                np.testing.assert_allclose(ours[b, c], ref, atol=1e-5)


def _liquid_layers(n, seed=0, shapes=((32, 32), (40, 48)), threshold=True):
    """Blurred normal layers as the liquid severities make them (thresholded, or not)."""
    from skimage.filters import gaussian

    rs = np.random.RandomState(seed)
    out = []
    for t in range(n):
        h, w = shapes[t % len(shapes)]
        c = spatter_mod.SPATTER[t % 3]
        layer = gaussian(rs.normal(c[0], c[1], (h, w)), sigma=c[2])
        if threshold:
            layer[layer < c[3]] = 0
        out.append(layer)
    return out


def test_spatter_opencv_steps(ic):
    import cv2

    n_pix = n_dist_off = 0
    for layer in _liquid_layers(60):
        u8 = (layer * 255).astype(np.uint8)
        edges = cv2.Canny(u8, 50, 150)
        ours = spatter_mod.canny(torch.from_numpy(u8).float()[None])[0].numpy()
        np.testing.assert_array_equal(ours, edges > 0)
        dist = cv2.distanceTransform(255 - edges, cv2.DIST_L2, 5)
        _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
        od = spatter_mod.chamfer_distance(torch.from_numpy(edges > 0)[None])[0].numpy()
        np.testing.assert_allclose(od, dist, atol=1e-5)
        n_pix += dist.size
        n_dist_off += int((od != dist).sum())
        d8 = cv2.blur(dist, (3, 3)).astype(np.uint8)
        np.testing.assert_array_equal(
            torch.floor(spatter_mod._box3_sum(torch.from_numpy(dist)[None]) / 9)[0].numpy(), d8)
        eq = cv2.equalizeHist(d8)
        ours_eq = spatter_mod.equalize_hist(torch.from_numpy(d8).long()[None])[0].numpy()
        np.testing.assert_array_equal(ours_eq, eq)
    assert n_dist_off / n_pix < 0.1  # float32 summation order only
    flat = np.full((8, 9), 7, np.uint8)  # one grey level
    np.testing.assert_array_equal(spatter_mod.equalize_hist(torch.from_numpy(flat).long()[None])[0].numpy(),
                                  cv2.equalizeHist(flat))
    # the whole liquid mask given the same layer
    for layer in _liquid_layers(12, seed=1, threshold=False):
        x = images(1, *layer.shape, seed=4)[0]
        ref_fn = reference_with(ic, "spatter", random=types.SimpleNamespace(
            normal=lambda size, loc, scale, layer=layer: layer.copy()),
            gaussian=lambda img, sigma, **kw: img)
        for s in (1, 2, 3):
            ref = chw(ref_fn(x, s))
            cut = np.where(layer < spatter_mod.SPATTER[s - 1][3], 0, layer)
            ours = spatter_mod.spatter_from_layer(to_tensor(x[None]), torch.from_numpy(cut).float()[None],
                                                  s)[0].numpy()
            if np.isnan(ref).any():
                continue
            np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_separable_blur_nearest_vs_skimage(ic):
    from skimage.filters import gaussian

    f = np.random.RandomState(0).rand(2, 33, 40)
    for sigma in (1, 1.5, 4):
        ours = elastic_mod.separable_blur(torch.from_numpy(f).float(), (sigma, sigma), 4.0, "nearest").numpy()
        for i in range(2):
            np.testing.assert_allclose(ours[i], gaussian(f[i], sigma=sigma), atol=2e-6)


# ------------------------------------------------------------------ statistics


def _stats(out, x):
    """Per image: mean, std, mean |out - x| (arrays (N,))."""
    n = out.shape[0]
    o, xi = out.reshape(n, -1), x.reshape(n, -1)
    return np.stack([o.mean(1), o.std(1), np.abs(o - xi).mean(1)])


@pytest.mark.parametrize("name", NAMES)
def test_statistics_match_reference(ic, name):
    n = 16 if name == "frost" else 24
    batch = images(n, seed=7)
    x = to_tensor(batch)
    for s in SEVERITIES:
        # ours: averaged over 4 seeds (cheap), which shrinks its share of the variance
        ours = np.mean([_stats(corrupt(x, name, s, seed=seed).numpy(), x.numpy())
                        for seed in range(11, 15)], axis=0)
        refs = []
        for i, img in enumerate(batch):
            np.random.seed(1000 * s + i)
            refs.append(chw(getattr(ic.corruptions, name)(ref_input(name, img), s)))
        keep = [i for i, r in enumerate(refs) if not np.isnan(r).any()]
        ref = _stats(np.stack([refs[i] for i in keep]), x.numpy()[keep])
        # paired over the same images: the per-image differences have only the
        # corruptions' own randomness, so the tolerance is tight
        d = ours[:, keep] - ref
        for k, what in enumerate(("mean", "std", "mean abs change")):
            se = d[k].std(ddof=1) / np.sqrt(d.shape[1])
            assert abs(d[k].mean()) <= 4 * se + 0.004, (name, s, what, ours[k].mean(), ref[k].mean(), se)


# ------------------------------------------------------------------ properties


@pytest.mark.parametrize("name", NAMES)
def test_properties(name):
    x = torch.from_numpy(images(6, 33, 35, seed=9)).permute(0, 3, 1, 2).float() / 255
    for gray in (False, True):
        xi = x[:, :1].contiguous() if gray else x
        for s in SEVERITIES:
            y = corrupt(xi, name, s, seed=1)
            assert y.shape == xi.shape and y.dtype == torch.float32
            assert torch.isfinite(y).all() and y.min() >= 0 and y.max() <= 1
            assert torch.equal(y, corrupt(xi, name, s, seed=1))
            assert not torch.equal(y, corrupt(xi, name, s, seed=2))
            assert (y - xi).abs().mean() > 1e-3
            for i in (0, 4):
                assert torch.equal(y[i], corrupt(xi[i:i + 1], name, s, seed=1, index=i)[0])
            assert torch.equal(y[2:5], corrupt(xi[2:5], name, s, seed=1, index=2))
            assert torch.equal(y[torch.tensor([5, 1])],
                               corrupt(xi[torch.tensor([5, 1])], name, s, seed=1, index=torch.tensor([5, 1])))
    y64 = corrupt(x.double(), name, 3, seed=1)
    assert y64.dtype == torch.float64
    assert torch.allclose(y64.float(), corrupt(x, name, 3, seed=1), atol=1e-6)


def test_frost_without_photos_refused_unless_asked(fresh_frost):
    from robustops.eval.corruptions import corruption_sources

    fresh_frost.setattr(frost_mod, "_frost_dir", lambda: None)   # imagecorruptions absent
    x = torch.rand(2, 3, 16, 16)
    for call in (lambda: corrupt(x, "frost", 1), frost_mod.frost_source,
                 lambda: corruption_sources(["fog", "frost"])):
        with pytest.raises(ImportError, match=r"pip install imagecorruptions.*procedural"):
            call()
    assert corruption_sources(["fog", "contrast"]) == {}       # frost-free runs need nothing
    fresh_frost.setenv(frost_mod.SOURCE_ENV, "procedural")
    assert corruption_sources(["fog", "frost"]) == {"frost": "procedural"}
    fresh_frost.setenv(frost_mod.SOURCE_ENV, "photos")
    with pytest.raises(ValueError, match="unknown frost source 'photos'"):
        frost_mod.frost_source()
    with pytest.raises(TypeError, match="must be a str"):
        frost_mod.set_frost_source(1)
    with pytest.raises(ValueError, match="choose from imagecorruptions, procedural"):
        frost_mod.set_frost_source("stand-in")


@pytest.mark.parametrize("opt_in", ["env", "call"])
def test_frost_procedural_stand_in(fresh_frost, opt_in):
    x = torch.from_numpy(images(12, seed=5)).permute(0, 3, 1, 2).float() / 255
    photo_means = None
    if frost_mod._frost_dir() is not None:
        assert frost_mod.frost_source() == "imagecorruptions"   # the default, when installed
        photo_means = [float(corrupt(x, "frost", s, seed=3).mean()) for s in SEVERITIES]
    if opt_in == "env":
        fresh_frost.setenv(frost_mod.SOURCE_ENV, "procedural")
    else:
        frost_mod.set_frost_source("procedural")
    assert frost_mod.frost_source() == "procedural"
    for k, img in enumerate(frost_mod._sources()[1]):
        assert img.dtype == torch.uint8 and tuple(img.shape[1:]) == frost_mod._PHOTO_SIZE[k]
        mean = img.float().mean((1, 2))
        std = img.float().std((1, 2))
        assert torch.allclose(mean, torch.tensor(frost_mod._PHOTO_MEAN[k]), atol=3)
        assert torch.allclose(std, torch.tensor(frost_mod._PHOTO_STD[k]), rtol=0.15)
    for s in SEVERITIES:
        y = corrupt(x, "frost", s, seed=3)
        assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
        assert torch.equal(y, corrupt(x, "frost", s, seed=3))
        assert torch.equal(y[3], corrupt(x[3:4], "frost", s, seed=3, index=3)[0])
        if photo_means is not None:
            assert abs(float(y.mean()) - photo_means[s - 1]) < 0.06
    assert torch.equal(frost_mod._procedural_photo(2), frost_mod._procedural_photo(2))


def test_faster_than_reference(ic):
    """All severities of the four on 16 images of 32x32: well under the reference's time."""
    batch = images(16, seed=8)
    x = to_tensor(batch)
    runs = []
    for _ in range(3):  # the first is a warm-up (frost photo cache, blur matrices)
        t = time.perf_counter()
        for name in NAMES:
            for s in SEVERITIES:
                corrupt(x, name, s)
        runs.append(time.perf_counter() - t)
    ours = min(runs[1:])
    t = time.perf_counter()
    for name in NAMES:
        for s in SEVERITIES:
            for img in batch:
                getattr(ic.corruptions, name)(ref_input(name, img), s)
    ref = time.perf_counter() - t
    assert ours * 3 < ref, (ours, ref)
