"""ResNeXt-29 for 32-pixel images: shapes, the standard 8x64d's size, the TENET layer, errors."""
import pytest
import torch

from robustops import recipes
from robustops.models.resnext import RESNEXT29_CONFIGS, TENET_LAYER, ResNeXt29, resnext29


def _count(model):
    return sum(p.numel() for p in model.parameters())


def test_output_shape_and_stage_shapes():
    torch.manual_seed(0)
    model = resnext29(7).eval()
    shapes = {}
    for name in ("stage1", "stage2", "stage3"):
        getattr(model, name).register_forward_hook(
            lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape)))
    with torch.no_grad():
        y = model(torch.rand(2, 3, 32, 32))
    assert y.shape == (2, 7) and torch.isfinite(y).all()
    assert shapes == {"stage1": (2, 64, 32, 32), "stage2": (2, 128, 16, 16),
                      "stage3": (2, 256, 8, 8)}
    assert TENET_LAYER == "stage2"


def test_standard_8x64d_has_34_4m_parameters():
    model = resnext29(10, "8x64d")
    assert _count(model) == pytest.approx(34.4e6, rel=0.005)
    assert model.stage2[0].conv_group.groups == 8
    assert model.stage1[0].conv_group.out_channels == 8 * 64  # 64 channels per group
    assert model.stage_widths == (256, 512, 1024)  # stage 2: 512 x 16 x 16 (METHODS.md)


def test_width_scaled_and_overrides():
    small = resnext29(8, widen_factor=0.25, stem_width=16)
    assert small.stage_widths == (16, 32, 64)
    with torch.no_grad():
        assert small(torch.rand(1, 3, 32, 32)).shape == (1, 8)
    m = resnext29(10, "2x8d", cardinality=4, base_width=4)
    assert (m.cardinality, m.base_width, m.widen_factor) == (4, 4, 1)
    assert m.stage1[0].conv_group.out_channels == 16
    assert set(RESNEXT29_CONFIGS) >= {"2x8d", "4x32d", "8x64d"}
    one = ResNeXt29(3, in_channels=1)
    with torch.no_grad():
        assert one(torch.rand(2, 1, 28, 28)).shape == (2, 3)


def test_trains_a_step():
    model = resnext29(4, widen_factor=0.25, stem_width=8).train()
    loss = torch.nn.functional.cross_entropy(model(torch.rand(4, 3, 32, 32)),
                                             torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_registry_and_errors():
    m = recipes.model("resnext29", {"num_classes": 10, "in_channels": 1, "image_size": 28})
    assert isinstance(m, ResNeXt29)
    with pytest.raises(ValueError, match="config"):
        resnext29(10, "3x3d")
    with pytest.raises(ValueError, match="widen_factor"):
        resnext29(10, widen_factor=0.3)
    with pytest.raises(ValueError, match="depth"):
        ResNeXt29(10, depth=30)
    with pytest.raises(ValueError, match="cardinality"):
        ResNeXt29(10, cardinality=0)
    with pytest.raises(ValueError, match="small_input"):
        resnext29(10, small_input=False)
