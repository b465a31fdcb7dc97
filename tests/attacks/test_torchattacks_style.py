"""torchattacks-style entry points: PGD(model, eps, alpha, steps) positionally, FGSM(model,
eps), and set_normalization_used(mean, std), checked against torchattacks itself."""
import pytest
import torch
from torch import nn

from robustops import normalized
from robustops.attacks import FGSM, PGD, AutoAttack
from robustops.testing import small_conv_classifier

torchattacks = pytest.importorskip("torchattacks")

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def _model(seed=0):
    return small_conv_classifier(seed)


def _data(n=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 16, 16, generator=g), torch.randint(0, 10, (n,), generator=g)


def test_positional_arguments_in_torchattacks_order():
    model = _model()
    pgd = PGD(model, 8 / 255, 2 / 255, 7)
    assert (pgd.eps, pgd.alpha, pgd.steps) == (8 / 255, 2 / 255, 7)
    assert FGSM(model, 4 / 255).eps == 4 / 255


def test_pgd_matches_torchattacks_on_a_normalised_model():
    # Deterministic start on both sides. torchattacks 3.5.1's own set_normalization_used
    # returns images outside the eps ball and [0, 1] (checked here: up to 0.13 from x at
    # eps 8/255), so its side attacks the wrapped model, which is what the call means.
    model = _model()
    x, y = _data()
    ours = PGD(model, 8 / 255, 2 / 255, 5, random_start=False, channels_last=False)
    ours.set_normalization_used(MEAN, STD)
    theirs = torchattacks.PGD(normalized(model, MEAN, STD), eps=8 / 255, alpha=2 / 255, steps=5,
                              random_start=False)
    adv_ours, adv_theirs = ours(x, y), theirs(x, y)
    assert (adv_ours - x).abs().max() <= 8 / 255 + 1e-6
    assert adv_ours.min() >= 0 and adv_ours.max() <= 1
    torch.testing.assert_close(adv_ours, adv_theirs, rtol=0, atol=1e-5)


def test_normalisation_equals_attacking_the_wrapped_model():
    model = _model(seed=2)
    x, y = _data(seed=3)
    wrapped = normalized(model, MEAN, STD)
    ours = PGD(model, 8 / 255, 2 / 255, 5, seed=4).set_normalization_used(MEAN, STD)
    reference = PGD(wrapped, 8 / 255, 2 / 255, 5, seed=4)
    assert torch.equal(ours(x, y), reference(x, y))
    # Calling it again replaces the normalisation instead of stacking a second one.
    ours.set_normalization_used(MEAN, STD)
    assert torch.equal(ours(x, y), reference(x, y))


def test_autoattack_takes_the_normalisation_into_its_suite():
    model = _model(seed=5)
    aa = AutoAttack(model, eps=8 / 255, n_classes=10).set_normalization_used(MEAN, STD)
    assert all(isinstance(a.model, nn.Sequential) and a.model[0].__class__.__name__ == "Normalize"
               for a in aa.attacks.values())


def test_bad_normalisation_is_refused():
    with pytest.raises(ValueError):
        PGD(_model(), 8 / 255).set_normalization_used((0.5, 0.5, 0.5), (0.0, 1.0, 1.0))


def test_attacks_refuse_normalised_data():
    # Normalised images (outside [0, 1]) would be clamped into garbage: refused with the
    # hygiene check's advice; the same model with set_normalization_used takes pixels.
    model = _model()
    x, y = _data()
    xn = (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
    for attack in (PGD(model, 8 / 255, 2 / 255, 3), FGSM(model, 8 / 255)):
        with pytest.raises(ValueError, match="normalise inside the model"):
            attack(xn, y)
        with pytest.raises(ValueError, match="outside"):
            attack.robust_mask(torch.full_like(x, float("nan")), y)
    PGD(model, 8 / 255, 2 / 255, 3).set_normalization_used(MEAN, STD)(x, y)
