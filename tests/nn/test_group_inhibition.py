"""GroupInhibition: hooks attach and come off, the applied mask is group_inhibition_mask's,
the step works inside a torchvision ResNet-18, clear errors."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustops import channel_kmeans, group_inhibition_mask, group_orthogonality_loss
from robustops.models import resnet18
from robustops.models.resnext import TENET_LAYER, resnext29
from robustops.nn import GroupInhibition


def _tiny(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.ReLU(), nn.Conv2d(12, 12, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(12, 5))


def _batch(n=6, size=8, classes=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g), torch.randint(0, classes, (n,), generator=g)


def test_hook_attaches_and_is_removed():
    model = _tiny()
    x, _ = _batch()
    before = model(x)
    layer = model[3]
    gi = GroupInhibition(model, "3", num_groups=3)
    assert len(layer._forward_hooks) == 1 and gi.attached
    assert torch.equal(model(x), before)  # passive: the model computes what it did
    assert gi.features.shape == (6, 12, 8, 8)
    gi.remove()
    assert len(layer._forward_hooks) == 0 and not gi.attached
    gi.remove()  # idempotent
    with GroupInhibition(model, "3", num_groups=3) as gi2:
        assert len(layer._forward_hooks) == 1
    assert len(layer._forward_hooks) == 0 and not gi2.attached
    assert list(gi2.parameters()) == []  # the model is not a submodule


def test_applied_mask_is_group_inhibition_mask_of_captured_f_and_g():
    model = _tiny()
    x, y = _batch()
    seen = {}

    def spy(module, inputs, output):  # runs after GroupInhibition's hook: sees its output
        seen.setdefault("outputs", []).append(output.detach().clone())

    gi = GroupInhibition(model, "3", num_groups=3, seed=5)
    handle = model[3].register_forward_hook(spy)
    model.train()
    out = gi.step(x, y, index=10)
    handle.remove()
    # G is d sum_b sigmoid(logits)_{b,y_b} / dF with the model in eval mode.
    f = model[:4](x)
    g = torch.autograd.grad(torch.sigmoid(model[4:](f)).gather(1, y[:, None]).sum(), f)[0]
    torch.testing.assert_close(out.features, f.detach())
    torch.testing.assert_close(out.grad, g)
    assignment = channel_kmeans(f.detach(), 3, seed=5, index=10).assignment
    assert torch.equal(out.assignment, assignment)
    mask = group_inhibition_mask(f.detach(), g, assignment, 3)
    torch.testing.assert_close(out.mask, mask)
    # The second forward's layer output is F * mask (the model is deterministic here).
    eval_out, masked_out = seen["outputs"]
    torch.testing.assert_close(masked_out, f.detach() * mask)
    torch.testing.assert_close(out.logits, model[4:](f * mask))
    assert out.logits.requires_grad and not out.mask.requires_grad
    # The orthogonality loss is the op's, on the unmasked F of the second forward.
    torch.testing.assert_close(out.orth_loss, group_orthogonality_loss(f, assignment, 3))
    torch.testing.assert_close(gi.orthogonality_loss(), out.orth_loss)
    assert model.training  # mode restored
    gi.remove()


def test_step_restores_eval_mode_and_differentiates():
    model = _tiny().eval()
    x, y = _batch()
    with GroupInhibition(model, "1", num_groups=2) as gi:
        out = gi(x, y)
        assert not model.training
        (F.cross_entropy(out.logits, y) + out.orth_loss).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_inside_torchvision_resnet18():
    torch.manual_seed(0)
    model = resnet18(num_classes=4, small_input=True).train()
    x = torch.rand(3, 3, 16, 16)
    y = torch.tensor([0, 1, 3])
    with GroupInhibition(model, "layer2", num_groups=6) as gi:
        out = gi.step(x, y)
        assert out.mask.shape == (3, 128, 8, 8) and out.logits.shape == (3, 4)
        assert ((out.mask > 0) & (out.mask <= 1)).all()
        assert out.assignment.min() >= 0 and out.assignment.max() < 6
        loss = 0.1 * F.cross_entropy(out.logits, y) + 1e-3 * out.orth_loss
        loss.backward()
        assert model.layer1[0].conv1.weight.grad is not None
    assert len(model.layer2._forward_hooks) == 0


def test_resnext_stage2_is_the_tenet_layer():
    model = resnext29(3, widen_factor=0.25, stem_width=8)
    x, _ = _batch(2, 32)
    with GroupInhibition(model, TENET_LAYER, 6) as gi:
        out = gi.step(x, torch.tensor([0, 2]))
    assert out.features.shape == (2, 32, 16, 16)


def test_unknown_layer_lists_close_names():
    model = resnet18(num_classes=4, small_input=True)
    with pytest.raises(ValueError, match=r"no layer named 'layer5'.*closest: .*layer[1-4]"):
        GroupInhibition(model, "layer5")
    with pytest.raises(ValueError, match="no layer named"):
        GroupInhibition(model, "")


def test_non_4d_output_and_k_above_c_are_clear_errors():
    model = _tiny()
    x, y = _batch()
    with GroupInhibition(model, "5", num_groups=2) as gi:  # Flatten: (B, 12)
        with pytest.raises(ValueError, match="4-D"):
            gi.step(x, y)
    with GroupInhibition(model, "3", num_groups=13) as gi:  # 12 channels
        with pytest.raises(ValueError, match="num_groups = 13 exceeds the 12 channels"):
            gi.step(x, y)
    assert torch.equal(model(x), model(x))  # hooks gone, modes reset
    with pytest.raises(ValueError, match="num_groups"):
        GroupInhibition(model, "3", num_groups=0)
