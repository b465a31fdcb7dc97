"""VOneNet builders, variants, ensembles (fused front-end), distillation, automatic EOT."""
import math

import pytest
import torch
import torch.nn.functional as F

from robustops.attacks import PGD
from robustops.models.ensemble import Ensemble, FusedVOneFrontEnd
from robustops.models.vonenet import V1_VARIANTS, v1_block_config, vonenet
from robustops.train import Distillation, Trainer

TINY = dict(simple_channels=8, complex_channels=8)


@pytest.mark.parametrize("backbone,size", [("small", 32), ("resnet18", 64), ("alexnet", 224),
                                           ("resnet50", 64)])
def test_backbones_give_logits(backbone, size):
    m = vonenet(backbone, 7, image_size=size, noise_mode="off", **TINY).eval()
    out = m(torch.rand(2, 3, size, size))
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    assert m.bottleneck.weight.shape == (64, 16, 1, 1) and m.bottleneck.bias is None


def test_variants_change_the_front_end():
    assert set(V1_VARIANTS) >= {"low_sf", "high_sf", "noise_off", "noise_low", "noise_high",
                                "simple_only", "complex_only"}
    low = vonenet("small", 3, image_size=32, variant="low_sf", **TINY).front
    high = vonenet("small", 3, image_size=32, variant="high_sf", **TINY).front
    assert low.biological["sf"].max() <= 2.0 + 1e-6 and high.biological["sf"].min() >= 2.0 - 1e-6
    assert not vonenet("small", 3, image_size=32, variant="noise_off", **TINY).stochastic
    assert vonenet("small", 3, image_size=32, variant="noise_high", **TINY).front.noise_scale == 0.175
    so = vonenet("small", 3, image_size=32, variant="simple_only", **TINY).front
    co = vonenet("small", 3, image_size=32, variant="complex_only", **TINY).front
    assert (so.simple_channels, so.complex_channels) == (16, 0)
    assert (co.simple_channels, co.complex_channels) == (0, 16)
    # Caller overrides beat the variant; bad names are named in the error.
    assert v1_block_config(32, "noise_off", noise_mode="fixed")["noise_mode"] == "fixed"
    with pytest.raises(ValueError, match="unknown variant"):
        v1_block_config(32, "nope")
    with pytest.raises(ValueError, match="no preset for image_size"):
        v1_block_config(48)
    with pytest.raises(ValueError, match="unknown backbone"):
        vonenet("vgg", 3, image_size=32)


def _members(variants=("base", "noise_high", "low_sf")):
    torch.manual_seed(0)
    return [vonenet("small", 5, image_size=32, variant=v, noise_mode="fixed", **TINY).eval()
            for v in variants]


def test_fused_front_end_equals_separate_and_shares_filters():
    ms = _members()
    ens = Ensemble(ms)
    assert isinstance(ens.front, FusedVOneFrontEnd)
    # base and noise_high share a bank (same seed and band): counted once.
    assert ens.front.unique_filters == ens.front.total_filters - 24
    x = torch.rand(3, 3, 32, 32)
    for fused, m in zip(ens.member_logits(x), ms):
        torch.testing.assert_close(fused, m(x), rtol=1e-5, atol=1e-5)
    p = ens(x).exp()
    torch.testing.assert_close(p.sum(1), torch.ones(3))
    expect = torch.stack([F.softmax(m(x), 1) for m in ms]).mean(0)
    torch.testing.assert_close(p, expect, rtol=1e-5, atol=1e-6)


def test_ensemble_falls_back_when_front_ends_differ():
    a = vonenet("small", 5, image_size=32, **TINY)
    b = vonenet("small", 5, image_size=64, **TINY)      # other geometry
    ens = Ensemble([a, b])
    assert ens.front is None
    with pytest.raises(ValueError, match="differ in ksize"):
        FusedVOneFrontEnd([a.front, b.front])
    with pytest.raises(ValueError, match="at least one"):
        Ensemble([])


def test_stochastic_models_get_eot_automatically():
    fresh = vonenet("small", 5, image_size=32, noise_mode="fresh", **TINY)
    fixed = vonenet("small", 5, image_size=32, noise_mode="fixed", **TINY)
    assert fresh.stochastic and not fixed.stochastic
    assert PGD(fresh, steps=1).eot_samples == 8
    assert PGD(fixed, steps=1).eot_samples == 1
    assert PGD(fresh, steps=1, eot_samples=2).eot_samples == 2
    assert Ensemble([fresh, fixed]).stochastic


def test_distillation_loss_and_training(tmp_path):
    teacher = Ensemble(_members(("base", "low_sf")))
    student = vonenet("small", 5, image_size=32, noise_mode="fixed", gabor_seed=9, **TINY)
    obj = Distillation(teacher, temperature=3.0, alpha=0.7)
    x, y = torch.rand(6, 3, 32, 32), torch.randint(0, 5, (6,))
    loss, metrics = obj.compute(student, x, y)
    with torch.no_grad():
        t = teacher(x)
    s = student(x)
    kl = (F.softmax(t / 3, 1) * (F.log_softmax(t / 3, 1) - F.log_softmax(s / 3, 1))).sum(1).mean() * 9
    expect = 0.7 * kl + 0.3 * F.cross_entropy(s, y)
    torch.testing.assert_close(loss, expect, rtol=1e-4, atol=1e-5)
    data = torch.utils.data.TensorDataset(torch.rand(16, 3, 32, 32), torch.randint(0, 5, (16,)))
    before = [p.detach().clone() for p in student.parameters()]
    Trainer(student, obj, data, batch_size=8, epochs=1, out_dir=tmp_path, progress=False).fit()
    assert any(not torch.equal(a, b) for a, b in zip(before, student.parameters()))
    with pytest.raises(ValueError, match="temperature"):
        Distillation(teacher, temperature=0)
    with pytest.raises(ValueError, match="alpha"):
        Distillation(teacher, alpha=1.5)
