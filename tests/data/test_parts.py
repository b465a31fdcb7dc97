"""robustops.data.parts: generated part-composed objects, part masks, spurious backgrounds."""
import pytest
import torch

from robustops.data import PartsDataset, make_parts
from robustops.data.parts import CLASS_PARTS, PART_CLASS_NAMES, PART_NAMES

C, K = len(PART_CLASS_NAMES), len(PART_NAMES) - 1


@pytest.fixture(scope="module")
def ds():
    return make_parts(300, split="test", seed=2, spurious=0.5)


def _tensors(d):
    return d.images, d.labels, d.part_masks, d.background_class


def test_types_shapes_ranges(ds):
    assert isinstance(ds, PartsDataset) and len(ds) == 300
    assert ds.images.dtype == torch.float32 and ds.images.shape == (300, 3, 64, 64)
    assert float(ds.images.min()) >= 0.0 and float(ds.images.max()) <= 1.0
    assert ds.labels.dtype == torch.int64 and ds.labels.shape == (300,)
    assert int(ds.labels.min()) >= 0 and int(ds.labels.max()) < C
    assert ds.part_masks.dtype == torch.int64 and ds.part_masks.shape == (300, 64, 64)
    assert int(ds.part_masks.min()) == 0 and int(ds.part_masks.max()) <= K
    assert ds.background_class.dtype == torch.int64 and ds.background_class.shape == (300,)
    assert ds.class_names == PART_CLASS_NAMES and ds.part_names == PART_NAMES
    assert ds.part_names[0] == "background" and ds.num_parts == K
    assert len(ds.class_parts) == C
    for ids in ds.class_parts:
        assert len(ids) >= 2 and all(1 <= k <= K for k in ids)
    # No two classes are built from the same set of parts.
    assert len({frozenset(ids) for ids in ds.class_parts}) == C
    m = PartsDataset.class_part_matrix()
    assert m.shape == (C, K + 1) and m.dtype == torch.bool and not bool(m[:, 0].any())
    assert [tuple(r.nonzero().flatten().tolist()) for r in m] == list(CLASS_PARTS)


def test_reproducible_and_keyed_by_seed_and_split():
    a = make_parts(20, seed=4, spurious=0.3)
    b = make_parts(20, seed=4, spurious=0.3)
    for ta, tb in zip(_tensors(a), _tensors(b)):
        assert torch.equal(ta, tb)
    for other in (make_parts(20, seed=5, spurious=0.3),
                  make_parts(20, seed=4, split="val", spurious=0.3),
                  make_parts(20, seed=4, split="test", spurious=0.3)):
        assert not torch.equal(a.images, other.images)
        assert not torch.equal(a.part_masks, other.part_masks)
    state = torch.get_rng_state()
    make_parts(4, seed=4)
    assert torch.equal(torch.get_rng_state(), state)


def test_chunking_does_not_change_images(monkeypatch):
    import robustops.data._render as R

    ref = make_parts(12, image_size=32, seed=1, spurious=0.5)
    orig = R.chunks
    monkeypatch.setattr(R, "chunks", lambda n, size: orig(n, size, pixels=5 * size * size))
    small = make_parts(12, image_size=32, seed=1, spurious=0.5)
    for ta, tb in zip(_tensors(ref), _tensors(small)):
        assert torch.equal(ta, tb)


def test_labels_balanced(ds):
    counts = torch.bincount(ds.labels, minlength=C)
    assert int(counts.max()) - int(counts.min()) <= 1


def test_parts_belong_to_class_and_are_visible(ds):
    for i in range(len(ds)):
        present = set(ds.part_masks[i].unique().tolist()) - {0}
        assert present <= set(ds.class_parts[int(ds.labels[i])]), i
    for c, ids in enumerate(ds.class_parts):
        masks = ds.part_masks[ds.labels == c]
        visible = torch.stack([(masks == k).flatten(1).any(1) for k in ids], 1)
        assert float(visible.all(1).float().mean()) >= 0.95, PART_CLASS_NAMES[c]


def test_object_area_and_inside_image(ds):
    fg = (ds.part_masks > 0).float().mean((1, 2))
    assert float(fg.min()) >= 0.04 and float(fg.max()) <= 0.5
    m = ds.part_masks > 0
    border = m[:, 0].any(1) | m[:, -1].any(1) | m[:, :, 0].any(1) | m[:, :, -1].any(1)
    assert float(border.float().mean()) <= 0.05


def test_parts_differ_from_background(ds):
    # Parts are saturated colours, backgrounds low-saturation patterns.
    sat = ds.images.max(1).values - ds.images.min(1).values
    fg = (ds.part_masks > 0).float()
    s_fg = (sat * fg).sum((1, 2)) / fg.sum((1, 2))
    s_bg = (sat * (1 - fg)).sum((1, 2)) / (1 - fg).sum((1, 2))
    assert float((s_fg - s_bg).min()) > 0.15


def test_spurious_backgrounds():
    tied = make_parts(60, seed=7, spurious=1.0)
    assert torch.equal(tied.background_class, tied.labels)
    free = make_parts(60, seed=7, spurious=0.0)
    assert bool((free.background_class == -1).all())
    half = make_parts(400, seed=7, spurious=0.5, image_size=32)
    frac = float((half.background_class >= 0).float().mean())
    assert 0.4 < frac < 0.6
    tied_half = half.background_class >= 0
    assert torch.equal(half.background_class[tied_half], half.labels[tied_half])
    conflict = make_parts(60, seed=7, spurious=1.0, mismatch=True)
    assert bool((conflict.background_class >= 0).all())
    assert bool((conflict.background_class != conflict.labels).all())
    # Same objects whatever the background: only the background changes (object pixels
    # only where anti-aliased part edges let a little background through).
    obj = (tied.part_masks > 0).unsqueeze(1).expand_as(tied.images)
    for other in (free, conflict):
        assert torch.equal(other.labels, tied.labels)
        assert torch.equal(other.part_masks, tied.part_masks)
        diff = (other.images - tied.images).abs()
        assert float((diff[obj] > 0.05).float().mean()) < 0.1
        assert float(diff[~obj].mean()) > 5 * float(diff[obj].mean())


def test_class_backgrounds_are_class_specific():
    # Tied backgrounds of one class look alike (same pattern and hue), those of different
    # classes do not: the mean background colour separates the classes.
    d = make_parts(200, seed=8, spurious=1.0, image_size=32)
    bgm = (d.part_masks == 0).unsqueeze(1).float()
    mean = (d.images * bgm).sum((2, 3)) / bgm.sum((2, 3))  # (N, 3)
    centroids = torch.stack([mean[d.labels == c].mean(0) for c in range(C)])
    nearest = torch.cdist(mean, centroids).argmin(1)
    assert float((nearest == d.labels).float().mean()) > 0.9


def test_getitem_and_loader():
    d = make_parts(10, image_size=32)
    x, y, m = d[4]
    assert x.shape == (3, 32, 32) and m.shape == (32, 32) and int(y) == int(d.labels[4])
    xb, yb, mb = next(iter(torch.utils.data.DataLoader(d, batch_size=5)))
    assert xb.shape == (5, 3, 32, 32) and yb.shape == (5,) and mb.dtype == torch.int64


def test_small_images_keep_parts():
    d = make_parts(100, image_size=32, seed=3)
    for c, ids in enumerate(d.class_parts):
        masks = d.part_masks[d.labels == c]
        visible = torch.stack([(masks == k).flatten(1).any(1) for k in ids], 1)
        assert float(visible.all(1).float().mean()) >= 0.9


# (kwargs, match[, error]): the error is a ValueError unless one is given.
@pytest.mark.parametrize("kwargs, match, error", [(*c, ValueError)[:3] for c in [
    ({"n": 0}, "n must be an int >= 1"),
    ({"n": 3, "image_size": 31}, "image_size must be an int >= 32"),
    ({"n": 3, "split": "dev"}, "split must be one of 'train', 'val', 'test'"),
    ({"n": 3, "spurious": 1.5}, r"spurious must be a number in \[0, 1\]"),
    ({"n": 3, "spurious": -0.1}, r"spurious must be a number in \[0, 1\]"),
    ({"n": 3, "spurious": float("nan")}, r"spurious must be a number in \[0, 1\]"),
    ({"n": 3, "spurious": True}, r"spurious must be a number in \[0, 1\]", TypeError),
    ({"n": 3, "mismatch": 1}, r"mismatch must be a bool, got 1 \(int\)", TypeError),
    ({"n": 3, "seed": "0"}, "seed must be an int", TypeError),
    ({"n": 2.0}, "n must be an int >= 1", TypeError),
]])
def test_validation(kwargs, match, error):
    n = kwargs.pop("n")
    with pytest.raises(error, match=match):
        make_parts(n, **kwargs)
