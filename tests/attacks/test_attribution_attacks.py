"""Attribution attacks: the top-k attack (softplus surrogate, label-preserving, restarts by
Kendall tau) and the random-sign baseline; the attribution-robustness evaluator."""
import pytest
import torch
from torch import nn

from robustops.attacks import PGD
from robustops.attacks.attribution_base import attribution_map
from robustops.attacks.attribution_random_sign import RandomSignPerturbation
from robustops.attacks.attribution_topk import TopKAttributionAttack
from robustops.attributions import kendall_tau, rank_metrics
from robustops.eval.attribution_robustness import attribution_robustness

FAST = dict(ig_steps=8, steps=8)


def _correct(model, x, y, n=12):
    with torch.no_grad():
        ok = model(x).argmax(1) == y
    return x[ok][:n], y[ok][:n]


def test_attribution_map_is_normalised_abs_channel_sum(digits_model):
    model, x, y = digits_model
    s = attribution_map(model, x[:4], y[:4], ig_steps=5)
    assert s.shape == (4, 64) and (s >= 0).all()
    torch.testing.assert_close(s.sum(1), torch.full((4,), 64.0))
    # A model blind to its input has a zero map, not NaN.
    blind = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    nn.init.zeros_(blind[1].weight)
    assert (attribution_map(blind, x[:2], y[:2] % 3, ig_steps=2) == 0).all()


def test_topk_attack_beats_random_signs_and_keeps_labels(digits_model):
    model, x, y = digits_model
    x, y = _correct(model, x, y)
    eps = 0.1
    topk = TopKAttributionAttack(model, eps=eps, k=8, alpha=0.02, restarts=1, **FAST)
    res = topk.attack(x, y)
    assert (res.x_adv - x).abs().max() <= eps + 1e-6
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    assert res.label_kept.all()
    with torch.no_grad():
        assert (model(res.x_adv).argmax(1) == y).all()
    rnd = RandomSignPerturbation(model, eps=eps, ig_steps=8).attack(x, y)
    m_topk = rank_metrics(res.map_nat, res.map_adv, 8)
    m_rnd = rank_metrics(rnd.map_nat, rnd.map_adv, 8)
    assert m_topk["topk"].mean() < m_rnd["topk"].mean()
    torch.testing.assert_close(res.kendall, kendall_tau(res.map_nat, res.map_adv))


def test_restarts_keep_the_lowest_kendall_tau(digits_model):
    model, x, y = digits_model
    x, y = _correct(model, x, y, n=8)
    kw = dict(eps=0.1, k=8, alpha=0.02, seed=3, **FAST)
    one = TopKAttributionAttack(model, restarts=1, **kw).attack(x, y)
    three = TopKAttributionAttack(model, restarts=3, **kw).attack(x, y)
    # Restart 0 is the same run (it starts at x): more restarts can only lower tau.
    assert (three.kendall <= one.kendall + 1e-12).all()
    again = TopKAttributionAttack(model, restarts=3, **kw).attack(x, y)
    torch.testing.assert_close(again.x_adv, three.x_adv)


def test_model_is_restored(digits_model):
    model, x, y = digits_model
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    flags = [p.requires_grad for p in model.parameters()]
    model.train()
    try:
        atk = TopKAttributionAttack(model, eps=0.05, k=4, steps=1, ig_steps=2, restarts=1)
        atk.attack(x[:2], y[:2])
        assert model.training
    finally:
        model.eval()
    assert [m for m in model.modules() if isinstance(m, nn.ReLU)] == relus
    assert [p.requires_grad for p in model.parameters()] == flags


def test_random_sign_is_keyed_by_sample_index(digits_model):
    model, x, y = digits_model
    x, y = _correct(model, x, y, n=10)
    atk = RandomSignPerturbation(model, eps=0.05, ig_steps=4, seed=7)
    full = atk.perturb(x, y)
    torch.testing.assert_close(atk.perturb(x[4:], y[4:], index=4), full[4:])
    moved = (full - x).abs()
    clipped = ((x + 0.05) > 1) | ((x - 0.05) < 0)
    kept = (full != x).flatten(1).any(1)
    assert torch.allclose(moved[kept][~clipped[kept]], torch.tensor(0.05), atol=1e-6)


def test_evaluator_reports_metrics_and_accuracies(digits_model):
    model, x, y = digits_model
    x, y = x[:24], y[:24]
    atk = RandomSignPerturbation(model, eps=0.05, ig_steps=6, seed=1)
    rep = attribution_robustness(model, (x, y), atk, k=10, batch_size=10,
                                 pgd=PGD(model, eps=0.05, steps=3))
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
    assert rep.n == 24 and rep.natural_accuracy == pytest.approx(acc)
    assert rep.n_attacked == round(acc * 24)
    assert 0 <= rep.pgd_accuracy <= rep.natural_accuracy
    assert 0 <= rep.topk_intersection <= 1 and -1 <= rep.kendall <= 1 and -1 <= rep.spearman <= 1
    # Samples are keyed by their global position: another batch size gives the same
    # perturbations (maps may differ in the last float bits with the batch's blocking).
    rep2 = attribution_robustness(model, (x, y), atk, k=10, batch_size=7)
    assert rep2.topk_intersection == pytest.approx(rep.topk_intersection, abs=2e-2)
    assert rep2.kendall == pytest.approx(rep.kendall, abs=2e-3)
    assert "Kendall tau" in rep.table() and rep.to_dict()["k"] == 10


@pytest.mark.parametrize("kw,match", [
    (dict(k=0), "k must be"), (dict(eps=-0.1), "eps must be"), (dict(beta=0.0), "beta must be"),
    (dict(steps=0), "steps must be"), (dict(restarts=0), "restarts must be"),
    (dict(ig_steps=0), "ig_steps must be"), (dict(alpha=float("inf")), "alpha must be"),
])
def test_bad_arguments(digits_model, kw, match):
    model = digits_model[0]
    args = dict(eps=0.1, k=4)
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        TopKAttributionAttack(model, **args)


def test_bad_inputs(digits_model):
    model, x, y = digits_model
    atk = TopKAttributionAttack(model, eps=0.1, k=65, steps=1, ig_steps=2)
    with pytest.raises(ValueError, match="exceeds the 64 pixels"):
        atk.attack(x[:2], y[:2])
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        atk.attack(x[:2].flatten(1), y[:2])
    with pytest.raises(ValueError, match="int64 tensor"):
        atk.attack(x[:2], y[:3])
    with pytest.raises(ValueError, match="empty batch"):
        atk.attack(x[:0], y[:0])
    with pytest.raises(TypeError, match="nn.Module"):
        TopKAttributionAttack(lambda z: z, eps=0.1, k=4)
    with pytest.raises(TypeError, match="AttributionAttack"):
        attribution_robustness(model, (x, y), PGD(model), k=4)


@pytest.mark.parametrize("lo", ["0", True, torch.zeros(3)], ids=["str", "bool", "per-channel"])
def test_box_must_be_two_numbers(lo):
    """lo/hi through image_box.check_bounds: a string or bool is a TypeError (float("0")
    once accepted it), per-channel bounds are refused by name."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    with pytest.raises(TypeError, match="TopKAttributionAttack"):
        TopKAttributionAttack(net, eps=0.1, k=5, lo=lo)
    with pytest.raises(ValueError, match="lo < hi|lo.*hi"):
        TopKAttributionAttack(net, eps=0.1, k=5, lo=1.0, hi=0.0)
