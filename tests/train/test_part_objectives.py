"""Part-model losses and objectives: the semi-supervised sum, TRADES / MAT, masks, the Trainer."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustops.data.part_masks import PartSegmentationDataset
from robustops.data.parts import make_parts
from robustops.models import build_part_model
from robustops.train import PartMAT, PartSemiSupervised, PartTRADES, Trainer
from robustops.data.part_targets import NO_MASK, pack_part_targets, unpack_part_targets
from robustops.train.objectives.part_loss import segmentation_loss, semi_supervised_part_loss

K, CLASSES = 6, 5


@pytest.fixture(scope="module")
def parts():
    return make_parts(8, image_size=32, seed=0)


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    return build_part_model(K, CLASSES, segmenter_kwargs={"width": 4}, **kw)


def test_semi_supervised_loss_ignores_missing_masks():
    torch.manual_seed(0)
    z = torch.randn(4, CLASSES)
    parts_logits = torch.randn(4, K + 1, 5, 6, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3])
    masks = torch.randint(0, K + 1, (4, 5, 6))
    masks[2:] = NO_MASK  # images 2 and 3 have no mask
    loss = semi_supervised_part_loss(z, parts_logits, y, masks, c=0.5)
    ce = F.cross_entropy(z, y, reduction="none")
    seg = torch.stack([F.cross_entropy(parts_logits[i:i + 1], masks[i:i + 1]) for i in range(2)])
    expected = (0.5 * ce.sum() + 0.5 * seg.sum()) / 4
    torch.testing.assert_close(loss, expected)
    (g,) = torch.autograd.grad(loss, parts_logits)
    assert g[:2].abs().sum() > 0 and torch.equal(g[2:], torch.zeros_like(g[2:]))
    # Without any mask: the classification term only.
    none = semi_supervised_part_loss(z, parts_logits, y, torch.full_like(masks, NO_MASK))
    torch.testing.assert_close(none, 0.5 * ce.mean())
    torch.testing.assert_close(semi_supervised_part_loss(z, parts_logits, y, None), 0.5 * ce.mean())


def test_segmentation_loss_partial_masks_and_errors():
    logits = torch.randn(2, 3, 2, 2)
    masks = torch.tensor([[[0, 1], [-1, 2]], [[-1, -1], [-1, -1]]])
    seg = segmentation_loss(logits, masks)
    labelled = F.cross_entropy(logits[:1], masks[:1], ignore_index=-1)
    torch.testing.assert_close(seg, torch.stack([labelled, torch.zeros(())]))
    with pytest.raises(ValueError, match=r"mask values must lie in -1..2"):
        segmentation_loss(logits, masks + 3)
    with pytest.raises(ValueError, match=r"must be \(B, H, W\) like the part logits"):
        segmentation_loss(logits, masks[:, :1])


def test_pack_unpack_round_trip():
    y = torch.tensor([3, 1])
    m = torch.randint(-1, 7, (2, 4, 5))
    t = pack_part_targets(y, m)
    assert t.shape == (2, 21) and t.dtype == torch.int64
    y2, m2 = unpack_part_targets(t, (4, 5))
    assert torch.equal(y2, y) and torch.equal(m2, m)
    assert unpack_part_targets(y, (4, 5)) == (y, None)
    with pytest.raises(ValueError, match=r"packed \(B, 1 \+ H\*W\) = \(B, 26\)"):
        unpack_part_targets(t, (5, 5))


def test_dataset_has_mask_convention(parts):
    ds = PartSegmentationDataset.from_parts(parts, mask_fraction=0.5, seed=1)
    assert int(ds.has_mask.sum()) == 4
    for i in range(len(ds)):
        x, y, m = ds[i]
        assert x.shape == (3, 32, 32) and y == parts.labels[i]
        if ds.has_mask[i]:
            assert torch.equal(m, parts.part_masks[i])
        else:
            assert bool((m == NO_MASK).all())
    x, t = ds.with_packed()[0]
    assert torch.equal(t, pack_part_targets(ds[0][1], ds[0][2]))
    with pytest.raises(ValueError, match="mask_fraction must be a number in"):
        PartSegmentationDataset.from_parts(parts, mask_fraction=1.5)


class ModeSpy(nn.Module):
    """A PartModel wrapper recording the train/eval mode of each class-logit-only call
    (the attacks') and of each return_parts call (the losses')."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.attack_modes, self.loss_modes = [], []

    def forward(self, x, return_parts=False):
        (self.loss_modes if return_parts else self.attack_modes).append(self.training)
        return self.model(x, return_parts=return_parts)


@pytest.mark.parametrize("make", [lambda: PartSemiSupervised(),
                                  lambda: PartMAT(steps=1, seed=1),
                                  lambda: PartTRADES(steps=1, seed=1)],
                         ids=["semi", "mat", "trades"])
def test_objectives_attack_in_eval_mode_and_train(parts, make):
    obj = make()
    spy = ModeSpy(_model())
    ds = PartSegmentationDataset.from_parts(parts, mask_fraction=0.5, packed=True)
    x = parts.images[:3]
    y = torch.stack([ds[i][1] for i in range(3)])
    spy.train()
    loss, metrics = obj.compute(spy, x, y)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert spy.training  # restored
    assert spy.loss_modes and all(spy.loss_modes)
    if obj.name != "part_semi":
        assert spy.attack_modes and not any(spy.attack_modes)
        assert "adv_acc" in metrics
    loss.backward()
    assert all(p.grad is not None for p in spy.model.segmenter.parameters())
    # Plain labels (no masks) work too: classification terms only.
    loss2, m2 = obj.compute(spy, x, y[:, 0])
    assert torch.isfinite(loss2) and float(m2["has_mask"]) == 0.0


def test_trainer_runs_part_objective(parts):
    ds = PartSegmentationDataset.from_parts(parts, mask_fraction=0.5, packed=True)
    model = _model(seed=3)
    trainer = Trainer(model, PartMAT(steps=1), torch.utils.data.Subset(ds, range(4)),
                      batch_size=2, epochs=1, lr=0.01, progress=False)
    last = trainer.fit()
    assert {"loss", "acc", "adv_acc", "has_mask"} <= set(last)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_part_objectives_reject_plain_models(parts):
    plain = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, CLASSES))
    with pytest.raises(TypeError, match="return_parts=True"):
        PartSemiSupervised().compute(plain, parts.images[:2], parts.labels[:2])
    with pytest.raises(ValueError, match="seg_weight"):
        PartSemiSupervised(seg_weight=2)
    with pytest.raises(ValueError, match="beta must be in"):
        PartMAT(beta=-1)
