"""Part models: segmenters, the five heads, PartModel (shapes, gradient flow, errors)."""
import pytest
import torch

from robustops import part_moments
from robustops.data.parts import PartsDataset
from robustops.models import (BBoxHead, DeepLabV3Segmenter, PartModel, PixelCountHead,
                              SmallPartSegmenter, TwoHead, WeightedBBoxHead, build_part_model)
from robustops.models.part_heads import HEAD_NAMES

K, CLASSES = 6, 5


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(0)
    return torch.rand(4, 3, 32, 32)


@pytest.mark.parametrize("head", HEAD_NAMES)
def test_every_head_shape_and_gradient_flow(images, head):
    torch.manual_seed(1)
    model = build_part_model(K, CLASSES, head=head, segmenter_kwargs={"width": 8},
                             class_part_matrix=PartsDataset.class_part_matrix())
    x = images.clone().requires_grad_()
    logits, parts = model(x, return_parts=True)
    assert logits.shape == (4, CLASSES) and parts.shape == (4, K + 1, 32, 32)
    assert torch.isfinite(logits).all()
    assert torch.equal(model(x), logits)  # train-mode BN: same batch, same statistics
    logits.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # The two-head model classifies from the encoder: its decoder learns from the seg loss only.
    seg = model.segmenter
    trunk = [seg.enc1, seg.enc2, seg.enc3] if head == "two_head" else [seg]
    seg_grads = [p.grad for m in trunk for p in m.parameters()]
    assert all(g is not None for g in seg_grads) and sum(g.abs().sum() for g in seg_grads) > 0
    for p in model.head.parameters():  # pixel_count has none
        assert p.grad is not None and p.grad.abs().sum() > 0
    model.eval()
    assert model(images[:1]).shape == (1, CLASSES)  # eval mode: any batch size


def test_bbox_heads_use_part_moments(images):
    seg = SmallPartSegmenter(K)
    parts = seg(images)
    for head, weighted in ((BBoxHead(K, CLASSES, background=False), False),
                           (WeightedBBoxHead(K, CLASSES), True)):
        assert torch.equal(head.features(parts), part_moments(parts, weighted))
    assert torch.equal(BBoxHead(K, CLASSES).features(parts)[:, 1:], part_moments(parts))


def _bbox_features_by_hand(part_logits):
    """Every channel's (background included) [mass, c_x, c_y, sigma_x, sigma_y], normalised
    as robustops does, written out in float64 (the original bbox model keeps channel 0)."""
    m = part_logits.double()
    _, _, h, w = m.shape
    s = torch.softmax(m, 1)
    sx, sy = s.sum(2), s.sum(3)
    gx, gy = torch.arange(w, dtype=m.dtype), torch.arange(h, dtype=m.dtype)
    a = s.sum((2, 3))
    cx, cy = (sx * gx).sum(-1) / (a + 1e-6), (sy * gy).sum(-1) / (a + 1e-6)
    vx = (sx * (gx - cx[..., None]) ** 2).sum(-1) / (a + 1e-6)
    vy = (sy * (gy - cy[..., None]) ** 2).sum(-1) / (a + 1e-6)
    return torch.stack([a / (h * w), cx / w * 2 - 1, cy / h * 2 - 1,
                        (vx + 1e-6).sqrt() / w * 2, (vy + 1e-6).sqrt() / h * 2], -1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bbox_head_keeps_the_background_by_default(dtype):
    # The original bbox model keeps the background channel unless "nobg" is set.
    torch.manual_seed(3)
    parts = torch.randn(3, K + 1, 12, 10, dtype=dtype, requires_grad=True)
    head = BBoxHead(K, CLASSES).to(dtype)
    assert head.background is True and head.net[1].num_features == 5 * (K + 1)
    feats = head.features(parts)
    assert feats.shape == (3, K + 1, 5) and feats.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(feats.double(), _bbox_features_by_hand(parts.detach()),
                               atol=tol, rtol=tol)
    # Gradients reach every channel, the background's included, and stay finite.
    grad, = torch.autograd.grad(feats[:, 0].square().sum(), parts)
    assert torch.isfinite(grad).all() and grad[:, 0].abs().sum() > 0
    assert head(parts).shape == (3, CLASSES)
    nobg = BBoxHead(K, CLASSES, background=False)
    assert nobg.net[1].num_features == 5 * K and nobg.features(parts).shape == (3, K, 5)
    # By name: the default and the "nobg" form; the weighted head never has a background.
    assert build_part_model(K, CLASSES, head="bbox").head.background is True
    assert build_part_model(K, CLASSES, head="bbox",
                            head_kwargs={"background": False}).head.background is False
    assert WeightedBBoxHead(K, CLASSES).background is False
    with pytest.raises(TypeError, match="background must be a bool, got 'yes' \\(str\\)"):
        BBoxHead(K, CLASSES, background="yes")


def test_part_moments_guard_bounds_and_absent_parts_are_documented():
    import importlib
    pm = importlib.import_module("robustops.ops.part_moments")  # the module, not the function
    w = h = 32
    # A one-pixel part: its true sigma is 0; the variance guard makes it 2e-3 / W (6.25e-5
    # at 32 px), not < 1e-6 as the docstring said.
    m = torch.zeros(1, 3, h, w, dtype=torch.float64)
    m[:, 1:] = -1e4
    m[0, 1, 5, 20], m[0, 0, 5, 20] = 1e4, -1e4
    one = part_moments(m)[0, 0]
    assert abs(float(one[3]) - 2e-3 / w) < 1e-7 and abs(float(one[4]) - 2e-3 / h) < 1e-7
    assert abs(float(one[1]) - (20 / w * 2 - 1)) < 2e-6  # mass guard: < 2e-6 / A, A = 1
    doc = " ".join(pm.__doc__.split())
    assert "changes a present part's features by < 1e-6" not in doc
    assert "2e-3 / W" in doc and "6.25e-5 at 32 px" in doc
    # An absent part (channel 2, S = 0): the documented [0, -1, -1, 2e-3 / W, 2e-3 / H].
    absent = part_moments(m)[0, 1]
    assert torch.allclose(absent, torch.tensor([0.0, -1.0, -1.0, 2e-3 / w, 2e-3 / h],
                                               dtype=torch.float64), atol=1e-12)
    assert "Absent parts" in doc and "[0, -1, -1, 2e-3 / W, 2e-3 / H]" in doc
    head_doc = " ".join(BBoxHead.__doc__.split())
    assert "[0, -1, -1, 2e-3 / W, 2e-3 / H]" in head_doc


def test_pixel_count_head_by_hand():
    # 2 classes, K = 3: class 0 <- parts {1, 2}, class 1 <- part {3}.
    mat = torch.tensor([[0, 1, 1, 0], [0, 0, 0, 1]], dtype=torch.bool)
    head = PixelCountHead(mat)
    logits = torch.zeros(1, 4, 2, 2)
    logits[0, 1] = 2.0
    logits[0, 2, 0, 0] = 4.0
    logits[0, 3] = torch.tensor([[1.0, 3.0], [0.0, 0.0]])
    # class 0: mean over pixels of (M_1 + M_2) / 2 = (2 + 1) / 2; class 1: mean of M_3 = 1.
    assert head(logits).tolist() == [[1.5, 1.0]]
    assert not list(head.parameters())


def test_two_head_reads_features(images):
    seg = SmallPartSegmenter(K, width=8)
    model = PartModel(seg, TwoHead(K, CLASSES, seg.feature_channels))
    logits = model(images)
    assert logits.shape == (4, CLASSES)
    parts, feats = seg(images, return_features=True)
    assert feats.shape == (4, 32, 8, 8)
    with pytest.raises(ValueError, match="needs the segmenter's features"):
        model.head(parts)


def test_small_segmenter_odd_sizes():
    seg = SmallPartSegmenter(3, width=4).eval()
    out, feats = seg(torch.rand(2, 3, 37, 45), return_features=True)
    assert out.shape == (2, 4, 37, 45) and feats.shape == (2, 16, 10, 12)


@pytest.mark.parametrize("output_stride", [8, 16])
def test_deeplabv3_segmenter(output_stride):
    torch.manual_seed(2)
    seg = DeepLabV3Segmenter(K, output_stride=output_stride).eval()
    with torch.no_grad():
        out, feats = seg(torch.rand(1, 3, 48, 48), return_features=True)
    assert out.shape == (1, K + 1, 48, 48)
    assert feats.shape == (1, 2048, 48 // output_stride, 48 // output_stride)
    model = PartModel(seg, WeightedBBoxHead(K, CLASSES)).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 48, 48)).shape == (1, CLASSES)


def test_errors_are_clear(images):
    with pytest.raises(ValueError, match="predicts 6 parts but the head expects 4"):
        PartModel(SmallPartSegmenter(6), BBoxHead(4, CLASSES))
    with pytest.raises(ValueError, match=r"expects part logits \(B, 7, H, W\)"):
        BBoxHead(K, CLASSES)(torch.zeros(2, 5, 8, 8))
    with pytest.raises(ValueError, match=r"expects images \(B, 3, H, W\)"):
        SmallPartSegmenter(K)(torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match="unknown part head"):
        build_part_model(K, CLASSES, head="boxes")
    with pytest.raises(ValueError, match="pixel_count needs class_part_matrix"):
        build_part_model(K, CLASSES, head="pixel_count")
    with pytest.raises(ValueError, match="class 1 has no part"):
        PixelCountHead(torch.tensor([[0, 1], [1, 0]]))
    with pytest.raises(ValueError, match="output_stride must be 8 or 16"):
        DeepLabV3Segmenter(K, output_stride=32)


def test_uint8_images_are_refused(images):
    model = build_part_model(K, CLASSES, segmenter_kwargs={"width": 8})
    as_bytes = (images * 255).round().to(torch.uint8)
    with pytest.raises(TypeError, match="PartModel: x must be a floating tensor.*uint8"):
        model(as_bytes)
    with pytest.raises(TypeError, match="SmallPartSegmenter: x must be a floating tensor"):
        model.segmenter(as_bytes)
    model(images)  # floats in [0, 1]: as before
