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
    for head, weighted in ((BBoxHead(K, CLASSES), False), (WeightedBBoxHead(K, CLASSES), True)):
        assert torch.equal(head.features(parts), part_moments(parts, weighted))


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
