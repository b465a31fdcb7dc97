"""Dissection, class selectivity and concept ablation on models built to have known units."""
import pytest
import torch
from torch import nn

from robustops.eval.dissection import dissect
from robustops.eval.unit_ablation import concept_ablation, units_zeroed
from robustops.eval.unit_selectivity import class_selectivity


class _Detectors(nn.Module):
    """Unit 0 fires on red pixels, unit 1 on blue pixels, unit 2 everywhere a little."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1, bias=True)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.bias.zero_()
            self.conv.weight[0, 0] = 1
            self.conv.weight[0, 1] = -1
            self.conv.weight[0, 2] = -1
            self.conv.weight[1, 2] = 1
            self.conv.weight[1, 0] = -1
            self.conv.weight[1, 1] = -1
            self.conv.bias[2] = 0.1
        # Classes: red, blue, and "nothing detected" (wins only when both detectors are silent).
        self.head = nn.Linear(3, 3)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]))
            self.head.bias.copy_(torch.tensor([0.0, 0.0, 0.5]))

    def forward(self, x):
        a = torch.relu(self.conv(x))
        return self.head(a.amax((2, 3)))


def _red_blue_images(n=40, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 3, size, size)
    red = torch.zeros(n, size, size, dtype=torch.bool)
    blue = torch.zeros_like(red)
    labels = torch.zeros(n, dtype=torch.long)
    for i in range(n):
        r0, c0 = torch.randint(0, size - 6, (2,), generator=g).tolist()
        if i % 2 == 0:
            x[i, 0, r0:r0 + 6, c0:c0 + 6] = 1
            red[i, r0:r0 + 6, c0:c0 + 6] = True
        else:
            x[i, 2, r0:r0 + 6, c0:c0 + 6] = 1
            blue[i, r0:r0 + 6, c0:c0 + 6] = True
            labels[i] = 1
    return x, red, blue, labels


def test_dissection_labels_the_detectors():
    model = _Detectors()
    x, red, blue, _ = _red_blue_images()
    res = dissect(model, "conv", x, {"red": red, "blue": blue}, quantile=0.9)
    assert res.labels[0] == "red" and res.labels[1] == "blue" and res.labels[2] is None
    assert res.iou[0, 0] > 0.5 and res.iou[1, 1] > 0.5
    assert res.counts() == {"red": 1, "blue": 1}
    with pytest.raises(ValueError, match="no layer"):
        dissect(model, "nope", x, {"red": red})
    with pytest.raises(ValueError, match="shape"):
        dissect(model, "conv", x, {"red": red[:3]})


def test_selectivity_and_ablation():
    model = _Detectors()
    x, red, blue, y = _red_blue_images()
    sel = class_selectivity(model, "conv", x, y)
    assert sel["selectivity"][0] > 0.99 and sel["selectivity"][1] > 0.99
    assert sel["selectivity"][2] < 0.01
    assert sel["preferred_class"][:2].tolist() == [0, 1]
    res = dissect(model, "conv", x, {"red": red, "blue": blue}, quantile=0.9)
    abl = concept_ablation(model, res, x, y)
    assert abl["none"]["accuracy"] == 1.0
    assert abl["red"]["change"] < 0 and abl["blue"]["change"] < 0
    with units_zeroed(model, "conv", [0, 1]):
        with torch.no_grad():
            assert (model(x).argmax(1) == 2).all()
    assert len(model.conv._forward_hooks) == 0
