"""robustops.data.shapes: generated shape x texture images, cue-conflict sets, masks."""
import math

import pytest
import torch

from robustops.data import ShapesDataset, make_shapes
from robustops.data.shapes import SHAPE_MODES, SHAPE_NAMES, TEXTURE_NAMES

C = len(SHAPE_NAMES)


@pytest.fixture(scope="module")
def sets():
    """One (seed, split) in every mode: 400 images of 32 px."""
    return {mode: make_shapes(400, split="test", seed=3, mode=mode) for mode in SHAPE_MODES}


def _tensors(ds):
    return ds.images, ds.shape_labels, ds.texture_labels, ds.shape_mask


@pytest.mark.parametrize("mode", SHAPE_MODES)
def test_types_shapes_ranges(sets, mode):
    ds = sets[mode]
    assert isinstance(ds, ShapesDataset) and len(ds) == 400
    assert ds.images.dtype == torch.float32 and ds.images.shape == (400, 3, 32, 32)
    assert float(ds.images.min()) >= 0.0 and float(ds.images.max()) <= 1.0
    assert ds.shape_labels.dtype == torch.int64 and ds.shape_labels.shape == (400,)
    assert ds.texture_labels.dtype == torch.int64 and ds.texture_labels.shape == (400,)
    assert ds.shape_mask.dtype == torch.bool and ds.shape_mask.shape == (400, 1, 32, 32)
    assert ds.class_names == SHAPE_NAMES and ds.texture_names == TEXTURE_NAMES
    assert len(set(SHAPE_NAMES)) == C and len(TEXTURE_NAMES) == C
    for labels in (ds.shape_labels, ds.texture_labels):
        assert int(labels.min()) >= -1 and int(labels.max()) < C


def test_reproducible_and_keyed_by_seed_and_split():
    a = make_shapes(64, seed=5, mode="cue_conflict")
    b = make_shapes(64, seed=5, mode="cue_conflict")
    for ta, tb in zip(_tensors(a), _tensors(b)):
        assert torch.equal(ta, tb)
    for other in (make_shapes(64, seed=6, mode="cue_conflict"),
                  make_shapes(64, seed=5, split="test", mode="cue_conflict"),
                  make_shapes(64, seed=5, split="val", mode="cue_conflict")):
        assert not torch.equal(a.images, other.images)
        assert not torch.equal(a.shape_mask, other.shape_mask)
    # The global RNG is neither read nor advanced.
    torch.manual_seed(0)
    state = torch.get_rng_state()
    c = make_shapes(64, seed=5, mode="cue_conflict")
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(123)
    assert torch.equal(make_shapes(64, seed=5, mode="cue_conflict").images, c.images)


def test_chunking_does_not_change_images(monkeypatch):
    # Images are rendered in chunks to bound memory; chunks of 7 images must give the
    # same tensors as one chunk (per-image noise is keyed by the image's index).
    import robustops.data._render as R

    ref = make_shapes(40, seed=1, mode="consistent")
    orig = R.chunks
    monkeypatch.setattr(R, "chunks", lambda n, size: orig(n, size, pixels=7 * size * size))
    small = make_shapes(40, seed=1, mode="consistent")
    for ta, tb in zip(_tensors(ref), _tensors(small)):
        assert torch.equal(ta, tb)


def test_labels_per_mode(sets):
    cons, conf = sets["consistent"], sets["cue_conflict"]
    sil, tex = sets["silhouette"], sets["texture"]
    assert torch.equal(cons.shape_labels, cons.texture_labels)
    assert bool((conf.shape_labels != conf.texture_labels).all())
    assert bool((conf.texture_labels >= 0).all())
    assert bool((sil.texture_labels == -1).all()) and bool((sil.shape_labels >= 0).all())
    assert bool((tex.shape_labels == -1).all()) and bool((tex.texture_labels >= 0).all())


def test_labels_balanced(sets):
    counts = torch.bincount(sets["consistent"].shape_labels, minlength=C)
    assert int(counts.max()) - int(counts.min()) <= 1
    conf = sets["cue_conflict"]
    tex_counts = torch.bincount(conf.texture_labels, minlength=C)
    assert int(tex_counts.min()) >= 400 // C - 8
    # Every (shape, other texture) pair is equally frequent to within one.
    pairs = torch.bincount(conf.shape_labels * C + conf.texture_labels, minlength=C * C).view(C, C)
    off = pairs[~torch.eye(C, dtype=torch.bool)]
    assert int(off.max()) - int(off.min()) <= 1 and int(pairs.diagonal().sum()) == 0


def test_modes_share_geometry_and_textures(sets):
    cons, conf, sil, tex = (sets[m] for m in SHAPE_MODES)
    # Silhouettes are those of the consistent / cue-conflict images.
    assert torch.equal(cons.shape_mask, conf.shape_mask)
    assert torch.equal(cons.shape_mask, sil.shape_mask)
    assert torch.equal(cons.shape_labels, sil.shape_labels)
    # Texture-mode images are the textures that fill the consistent shapes.
    assert torch.equal(tex.texture_labels, cons.texture_labels)
    deep = cons.shape_mask & ~_edge(cons.shape_mask)
    deep3 = deep.expand_as(cons.images)
    assert torch.allclose(cons.images[deep3], tex.images[deep3], atol=1e-5)
    assert not bool(tex.shape_mask.any())


def _edge(mask, width=1):
    """Pixels of mask (N, 1, H, W) within `width` pixels (a square window) of a pixel outside
    it: the band that anti-aliasing may blend."""
    m = mask.float()
    k = 2 * width + 1
    eroded = -torch.nn.functional.max_pool2d(-m, k, stride=1, padding=width)
    return mask & (eroded < 0.5)


def test_mask_area_reasonable(sets):
    area = sets["consistent"].shape_mask.float().mean((1, 2, 3))
    assert float(area.min()) >= 0.05 and float(area.max()) <= 0.60
    small = make_shapes(200, image_size=16, seed=2).shape_mask.float().mean((1, 2, 3))
    assert float(small.min()) >= 0.05 and float(small.max()) <= 0.60


def test_every_shape_fits_and_classes_differ(sets):
    ds = sets["consistent"]
    # The shape never touches the border (position jitter keeps it inside).
    m = ds.shape_mask[:, 0]
    border = m[:, 0].any(1) | m[:, -1].any(1) | m[:, :, 0].any(1) | m[:, :, -1].any(1)
    assert not bool(border.any())
    # Mean mask area differs between some classes (shapes are genuinely different).
    area = m.float().mean((1, 2))
    per_class = torch.stack([area[ds.shape_labels == k].mean() for k in range(C)])
    assert float(per_class.max() - per_class.min()) > 0.03


def test_silhouette_inside_differs_from_outside(sets):
    ds = sets["silhouette"]
    inner = ds.shape_mask & ~_edge(ds.shape_mask)
    # Outside, keep a wider margin: thin tips (star points) blend pixels up to ~2 px away.
    outer = ~ds.shape_mask & ~_edge(~ds.shape_mask, width=2)
    for i in range(len(ds)):
        img = ds.images[i]
        fg = img[:, inner[i, 0]]
        bg = img[:, outer[i, 0]]
        # Flat fill on a plain background: constant inside, constant outside, far apart.
        assert float(fg.std(1).max()) < 1e-5 and float(bg.std(1).max()) < 1e-5
        assert float((fg.mean(1) - bg.mean(1)).abs().max()) > 0.2


def test_textured_shape_stands_out(sets):
    # In consistent / cue-conflict images the textured shape differs from the background:
    # both texture shades are darker than a light background or lighter than a dark one,
    # and the background is a smooth gradient while the texture is two-tone.
    for mode in ("consistent", "cue_conflict"):
        ds = sets[mode]
        value = ds.images.max(1).values  # HSV value per pixel
        m = ds.shape_mask[:, 0].float()
        fg = (value * m).sum((1, 2)) / m.sum((1, 2))
        bg = (value * (1 - m)).sum((1, 2)) / (1 - m).sum((1, 2))
        assert float((fg - bg).abs().min()) > 0.2
        # High-frequency content: the texture has it, the background gradient has not.
        dx = (ds.images[..., 1:] - ds.images[..., :-1]).abs().sum(1)
        inner = (m[..., 1:] * m[..., :-1])
        outer = ((1 - m[..., 1:]) * (1 - m[..., :-1]))
        g_in = (dx * inner).sum((1, 2)) / inner.sum((1, 2))
        g_out = (dx * outer).sum((1, 2)) / outer.sum((1, 2))
        assert float((g_in > 3 * g_out).float().mean()) > 0.95


def test_texture_classes_are_distinct(sets):
    # Mean texture-only image statistics differ between texture classes: e.g. grain has
    # far more pixel-to-pixel change than rings or stripes.
    ds = sets["texture"]
    lum = ds.images.mean(1)
    dx = (lum[:, :, 1:] - lum[:, :, :-1]).abs().mean((1, 2))
    per = torch.stack([dx[ds.texture_labels == k].mean() for k in range(C)])
    grain = TEXTURE_NAMES.index("grain")
    assert int(per.argmax()) == grain


def test_getitem_and_target():
    ds = make_shapes(16, mode="cue_conflict", seed=4)
    x, y = ds[3]
    assert x.shape == (3, 32, 32) and int(y) == int(ds.shape_labels[3])
    ds_t = make_shapes(16, mode="cue_conflict", seed=4, target="texture")
    assert int(ds_t[3][1]) == int(ds.texture_labels[3])
    ds.target = "texture"
    assert int(ds[3][1]) == int(ds.texture_labels[3]) and torch.equal(ds.labels, ds.texture_labels)
    tex = make_shapes(16, mode="texture")
    assert tex.target == "texture" and int(tex[0][1]) >= 0
    with pytest.raises(ValueError, match="no shape label"):
        tex.target = "shape"
    with pytest.raises(ValueError, match="no texture label"):
        make_shapes(4, mode="silhouette", target="texture")
    # Works with a DataLoader (default collate).
    xb, yb = next(iter(torch.utils.data.DataLoader(ds, batch_size=8)))
    assert xb.shape == (8, 3, 32, 32) and yb.dtype == torch.int64


def test_texture_mask():
    for mode in SHAPE_MODES:
        ds = make_shapes(8, mode=mode)
        expect = {"texture": torch.ones_like(ds.shape_mask),
                  "silhouette": torch.zeros_like(ds.shape_mask)}.get(mode, ds.shape_mask)
        assert torch.equal(ds.texture_mask, expect)


def test_other_image_sizes():
    ds = make_shapes(24, image_size=64, seed=9, mode="cue_conflict")
    assert ds.images.shape == (24, 3, 64, 64) and ds.shape_mask.shape == (24, 1, 64, 64)
    assert float(ds.images.min()) >= 0.0 and float(ds.images.max()) <= 1.0
    one = make_shapes(1, image_size=16)
    assert one.images.shape == (1, 3, 16, 16)


# (kwargs, match[, error]): the error is a ValueError unless one is given.
@pytest.mark.parametrize("kwargs, match, error", [(*c, ValueError)[:3] for c in [
    ({"n": 0}, "n must be an int >= 1"),
    ({"n": 2.0}, r"n must be an int >= 1, got 2.0 \(float\)", TypeError),
    ({"n": True}, r"n must be an int >= 1, got True \(bool\)", TypeError),
    ({"n": 4, "image_size": 15}, "image_size must be an int >= 16"),
    ({"n": 4, "split": "all"}, "split must be one of 'train', 'val', 'test'"),
    ({"n": 4, "mode": "stylized"}, "mode must be one of 'consistent', 'cue_conflict', "
                                   "'silhouette', 'texture'"),
    ({"n": 4, "seed": 1.5}, "seed must be an int", TypeError),
    ({"n": 4, "target": "colour"}, "target must be one of 'shape', 'texture'"),
]])
def test_validation(kwargs, match, error):
    n = kwargs.pop("n")
    with pytest.raises(error, match=match):
        make_shapes(n, **kwargs)


def test_large_seed_and_negative_seed():
    a = make_shapes(8, seed=2 ** 70)
    b = make_shapes(8, seed=-1)
    assert not torch.equal(a.images, b.images)
    assert math.isfinite(float(a.images.sum()))
