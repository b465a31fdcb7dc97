"""Robust-attribution objectives: IG-NORM, IG-SUM-NORM, CACR + WACR (double backprop)."""
import pytest
import torch
from torch import nn
from torch.func import functional_call

from robustops.train import Trainer
from robustops.train.objectives.cacr_wacr import CACRWACR, most_likely_wrong_class
from robustops.train.objectives.rar import IGNorm, IGSumNorm, attribution_pgd, ig_ce

SMALL = dict(eps=0.1, alpha=0.05, steps=2, m=4, approx_factor=2)


def _tiny(dtype=torch.float64, seed=0):
    """A smooth (tanh) model on 1 x 4 x 4 images: finite differences are meaningful."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 6), nn.Tanh(), nn.Linear(6, 3)).to(dtype)


def _batch(dtype=torch.float64, b=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 1, 4, 4, generator=g, dtype=torch.float64).to(dtype) * 0.8 + 0.1
    return x, torch.tensor([0, 1, 2][:b] * (b // 3 + 1))[:b]


class _Functional(nn.Module):
    """`base` run with an explicit parameter dict (so a loss is a function of the params)."""

    def __init__(self, base, params):
        super().__init__()
        self.base, self.params = base, params

    def forward(self, x):
        return functional_call(self.base, self.params, (x,))


def _objectives():
    return [IGNorm(lam=0.7, **SMALL), IGSumNorm(beta=0.7, **SMALL),
            CACRWACR(lam=0.5, beta=0.5, **SMALL)]


@pytest.mark.parametrize("obj", _objectives(), ids=lambda o: o.name)
def test_parameter_gradient_exists(obj):
    model = _tiny()
    x, y = _batch()
    loss, metrics = obj.compute(model, x, y)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    # The regulariser itself reaches the first layer through double backprop.
    assert model[1].weight.grad.abs().sum() > 0
    assert all(torch.isfinite(torch.as_tensor(v)).all() for v in metrics.values())


@pytest.mark.parametrize("obj", _objectives(), ids=lambda o: o.name)
def test_parameter_gradient_matches_finite_differences_fp64(obj):
    base = _tiny()
    x, y = _batch()
    x_adv = attribution_pgd(base, x, y, eps=0.1, alpha=0.05, steps=2, ig_steps=2, beta=1.0,
                            include_ce=True, seed=5)
    names = [n for n, _ in base.named_parameters()]
    init = [p.detach().clone() for p in base.parameters()]

    def loss_of(*params):
        model = _Functional(base, dict(zip(names, params)))
        return obj.loss(model, x, x_adv, y)[0]

    params = tuple(p.clone().requires_grad_() for p in init)
    assert torch.autograd.gradcheck(loss_of, params, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_regularisers_are_differentiable_twice():
    # A gradient penalty on the CACR + WACR terms: their backward ops are differentiable.
    base = _tiny()
    x, y = _batch()
    obj = CACRWACR(**SMALL)
    x_adv = (x + 0.05).clamp(0, 1)
    cacr, wacr = obj.regularisers(base, x, x_adv, y)
    grads = torch.autograd.grad((cacr + wacr).sum(), list(base.parameters()), create_graph=True)
    penalty = sum(g.pow(2).sum() for g in grads)
    penalty.backward()
    assert base[1].weight.grad.abs().sum() > 0


def test_inner_maximisation_stays_in_the_ball_and_increases_the_norm():
    model = _tiny(torch.float32)
    x, y = _batch(torch.float32, b=6)
    kw = dict(eps=0.1, alpha=0.03, ig_steps=3, beta=1.0, include_ce=False, seed=2)
    x_adv = attribution_pgd(model, x, y, steps=5, **kw)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    start = attribution_pgd(model, x, y, steps=0, **kw)  # the random start alone
    norm = lambda xa: ig_ce(model, x, xa, y, 3, create_graph=False).abs().sum()  # noqa: E731
    assert norm(x_adv) > 1.5 * norm(start)
    # Without a random start the L1 norm's gradient vanishes at x' = x (|.|'(0) = 0).
    stuck = attribution_pgd(model, x, y, steps=2, random_start=False, **kw)
    torch.testing.assert_close(stuck, x)
    # The model's state is restored: training flags and requires_grad.
    assert all(p.requires_grad for p in model.parameters())


def test_most_likely_wrong_class():
    logits = torch.tensor([[5.0, 4.0, 1.0], [0.0, 1.0, 2.0]])
    assert most_likely_wrong_class(logits, torch.tensor([0, 2])).tolist() == [1, 1]


def test_defaults_and_dataset_configs():
    obj = CACRWACR()
    assert (obj.m, obj.approx_factor, obj.inner_steps, obj.lam, obj.steps) == (20, 4, 5, 0.1, 7)
    assert obj.eps == pytest.approx(8 / 255) and obj.alpha == pytest.approx(2 / 255)
    mnist = IGSumNorm.for_dataset("mnist", m=10)
    assert (mnist.eps, mnist.alpha, mnist.steps, mnist.m) == (0.3, 0.01, 40, 10)
    assert IGNorm.for_dataset("fmnist").steps == 20
    with pytest.raises(ValueError, match="unknown dataset"):
        IGNorm.for_dataset("cifar")


@pytest.mark.parametrize("kw,match", [
    (dict(m=0), "m must be"), (dict(steps=0), "steps must be"), (dict(eps=-1.0), "eps must be"),
    (dict(lam=float("nan")), "lam must be"), (dict(approx_factor=0), "approx_factor"),
    (dict(attribution_mode="test"), "attribution_mode"), (dict(internal_batch_size=0), "internal"),
])
def test_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        IGNorm(**kw)


def test_trainer_runs_ig_sum_norm_and_resumes_state(tmp_path):
    model = _tiny(torch.float32)
    x, y = _batch(torch.float32, b=12)
    ds = torch.utils.data.TensorDataset(x, y)
    obj = IGSumNorm(**SMALL)
    Trainer(model, obj, ds, batch_size=6, epochs=1, lr=0.05, out_dir=tmp_path, progress=False,
            device="cpu").fit()
    assert obj.state_dict()["calls"] == 2
    fresh = IGSumNorm(**SMALL)
    fresh.load_state_dict(obj.state_dict())
    assert fresh._calls == 2
