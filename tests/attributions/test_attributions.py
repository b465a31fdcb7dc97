"""Attributions: saliency, input x gradient, integrated gradients, SmoothGrad, the surrogate."""
import math

import pytest
import torch
from torch import nn

from robustops.attributions import (input_x_gradient, integrated_gradients,
                                    integrated_gradients_multi, path_alphas, saliency,
                                    smoothgrad, softplus_surrogate)
from robustops.attributions.smoothgrad import SMOOTHGRAD_STREAM
from robustops.counter_rng import counter_normal

captum_attr = pytest.importorskip("captum.attr")


def _cnn(seed=0, act=nn.ReLU, dtype=torch.float32):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), act(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    return model.to(dtype).eval()


def _x(b=3, seed=1, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 1, 8, 8, generator=g, dtype=torch.float64).to(dtype)


@pytest.mark.parametrize("abs_", [True, False])
def test_saliency_matches_captum(digits_model, abs_):
    model, x, y = digits_model
    x, y = x[:16], y[:16]
    ours = saliency(model, x, y, abs=abs_)
    ref = captum_attr.Saliency(model).attribute(x.clone(), target=y, abs=abs_)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-7)
    # An int target and the predicted class (None).
    torch.testing.assert_close(saliency(model, x, 3), captum_attr.Saliency(model).attribute(
        x.clone(), target=3), rtol=1e-5, atol=1e-7)
    pred = model(x).argmax(1)
    torch.testing.assert_close(saliency(model, x), saliency(model, x, pred))


def test_input_x_gradient_matches_captum(digits_model):
    model, x, y = digits_model
    ours = input_x_gradient(model, x[:16], y[:16])
    ref = captum_attr.InputXGradient(model).attribute(x[:16].clone(), target=y[:16])
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("method", ["riemann_right", "gausslegendre", "riemann_trapezoid"])
@pytest.mark.parametrize("internal_batch_size", [None, 16, 40])
def test_integrated_gradients_matches_captum(digits_model, method, internal_batch_size):
    model, x, y = digits_model
    x, y = x[:8], y[:8]
    base = torch.rand_like(x) * 0.2
    ours = integrated_gradients(model, x, y, baseline=base, steps=20, method=method,
                                internal_batch_size=internal_batch_size)
    ref = captum_attr.IntegratedGradients(model).attribute(
        x, baselines=base, target=y, n_steps=20, method=method,
        internal_batch_size=internal_batch_size)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-6)


def test_integrated_gradients_cnn_matches_captum_and_is_complete():
    model, x = _cnn(dtype=torch.float64), _x(dtype=torch.float64)
    ours = integrated_gradients(model, x, 2, steps=32, internal_batch_size=7)
    ref = captum_attr.IntegratedGradients(model).attribute(x, target=2, n_steps=32,
                                                           method="riemann_right")
    torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-12)
    # Completeness: sum IG ~ f(x) - f(0) (the Riemann error shrinks with the steps; a
    # smooth model, as ReLU kinks slow the convergence).
    model = _cnn(act=nn.Tanh, dtype=torch.float64)
    fine = integrated_gradients(model, x, 2, steps=200, method="riemann_middle")
    gap = model(x)[:, 2] - model(torch.zeros_like(x))[:, 2]
    torch.testing.assert_close(fine.flatten(1).sum(1), gap, rtol=1e-3, atol=1e-4)


def test_path_alphas():
    a, w = path_alphas(4)
    assert a == [0.25, 0.5, 0.75, 1.0] and w == [0.25] * 4  # METHODS.md: k/m, 1/m
    assert path_alphas(4, "riemann_left")[0] == [0.0, 0.25, 0.5, 0.75]
    a, w = path_alphas(5, "gausslegendre")
    assert math.isclose(sum(w), 1.0) and all(0 < v < 1 for v in a)


def test_multi_target_shares_the_path():
    model, x = _cnn(), _x(4)
    t1, t2 = torch.tensor([0, 1, 2, 3]), torch.tensor([4, 3, 2, 1])
    both = integrated_gradients_multi(model, x, [t1, t2], steps=9, internal_batch_size=8)
    torch.testing.assert_close(both[0], integrated_gradients(model, x, t1, steps=9))
    torch.testing.assert_close(both[1], integrated_gradients(model, x, t2, steps=9))


@pytest.mark.parametrize("output", ["prob", "ce", "log_prob"])
def test_outputs(output):
    model, x = _cnn(), _x(2)
    y = torch.tensor([1, 3])
    fn = {"prob": lambda o: torch.softmax(o, 1)[torch.arange(2), y],
          "ce": lambda o: nn.functional.cross_entropy(o, y, reduction="none"),
          "log_prob": lambda o: torch.log_softmax(o, 1)[torch.arange(2), y]}[output]
    xr = x.clone().requires_grad_()
    (g,) = torch.autograd.grad(fn(model(xr)).sum(), xr)
    torch.testing.assert_close(saliency(model, x, y, abs=False, output=output), g)
    custom = saliency(model, x, y, abs=False, output=lambda o, t: fn(o))
    torch.testing.assert_close(custom, g)


def test_create_graph_ig_is_differentiable_fp64():
    # A smooth model: the attribution's gradient in x and in the parameters is checked
    # against finite differences (double backprop through the model and the fused op).
    model = _cnn(act=nn.Tanh, dtype=torch.float64)
    x = _x(2, dtype=torch.float64).requires_grad_()
    base = torch.full_like(x, 0.1)

    def f(x):
        return integrated_gradients(model, x, 1, baseline=base, steps=4, output="prob",
                                    create_graph=True, internal_batch_size=4)

    assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-6)
    # In the parameters: the first layer's weight as a function argument.
    from torch.func import functional_call

    names = dict(model.named_parameters())

    def f_w(weight):
        params = {**names, "0.weight": weight}
        fmodel = lambda z: functional_call(model, params, (z,))  # noqa: E731
        return integrated_gradients(fmodel, x.detach(), 1, steps=3, output="ce",
                                    create_graph=True).abs().sum()

    weight = names["0.weight"].detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(f_w, (weight,), eps=1e-6, atol=1e-6)


def test_saliency_and_smoothgrad_create_graph():
    model = _cnn(act=nn.Tanh)
    x = _x(2).requires_grad_()
    for attr in (saliency(model, x, 1, create_graph=True),
                 input_x_gradient(model, x, 1, create_graph=True),
                 smoothgrad(model, x, 1, samples=3, create_graph=True)):
        (g,) = torch.autograd.grad(attr.sum(), x)
        assert torch.isfinite(g).all() and g.abs().sum() > 0
    loss = saliency(model, x.detach(), 1, create_graph=True).sum()
    loss.backward()
    assert model[0].weight.grad is not None and model[0].weight.grad.abs().sum() > 0


def test_smoothgrad_noise_is_keyed_by_sample_index():
    model, x = _cnn(), _x(4)
    full = smoothgrad(model, x, 1, samples=5, stdev=0.2, seed=3)
    # The same samples in another batch split give the same maps.
    part = smoothgrad(model, x[2:], 1, samples=5, stdev=0.2, seed=3, index=2)
    torch.testing.assert_close(part, full[2:])
    chunked = smoothgrad(model, x, 1, samples=5, stdev=0.2, seed=3, internal_batch_size=8)
    torch.testing.assert_close(chunked, full)
    assert not torch.allclose(smoothgrad(model, x, 1, samples=5, stdev=0.2, seed=4), full)
    # By hand with the same counter noise.
    noise = counter_normal(3, SMOOTHGRAD_STREAM, torch.arange(4), 5 * 64).reshape(4, 5, 1, 8, 8)
    manual = torch.stack([saliency(model, x + 0.2 * noise[:, j], 1) for j in range(5)]).mean(0)
    torch.testing.assert_close(full, manual)
    torch.testing.assert_close(smoothgrad(model, x, 1, stdev=0.0, samples=2), saliency(model, x, 1))
    ixg = smoothgrad(model, x, 1, samples=2, stdev=0.0, method="input_x_gradient")
    torch.testing.assert_close(ixg, input_x_gradient(model, x, 1))


def test_softplus_surrogate_swaps_and_restores():
    relu = nn.ReLU()
    model = nn.Sequential(nn.Linear(3, 3), relu, nn.Sequential(nn.Linear(3, 3), nn.ReLU()))
    x = torch.randn(5, 3)
    before = model(x)
    with softplus_surrogate(model, beta=5.0) as m:
        assert isinstance(m[1], nn.Softplus) and isinstance(m[2][1], nn.Softplus)
        z = model[0](x)
        expected = model[2](nn.functional.softplus(z, beta=5.0))
        torch.testing.assert_close(model(x), expected)
    assert model[1] is relu and isinstance(model[2][1], nn.ReLU)
    torch.testing.assert_close(model(x), before)
    with pytest.raises(RuntimeError, match="boom"):
        with softplus_surrogate(model):
            raise RuntimeError("boom")
    assert model[1] is relu
    with pytest.warns(RuntimeWarning, match="no nn.ReLU"):
        with softplus_surrogate(nn.Linear(2, 2)):
            pass
    with pytest.raises(ValueError, match="beta"):
        with softplus_surrogate(model, beta=0):
            pass


@pytest.mark.parametrize("case", [
    ("steps", dict(steps=0), "steps must be an int >= 1"),
    ("method", dict(method="simpson"), "method must be one of"),
    ("ibs", dict(internal_batch_size=0), "internal_batch_size"),
    ("target shape", dict(target=torch.tensor([1])), r"target must be an int, a \(3,\)"),
    ("target dtype", dict(target=torch.ones(3)), "target must be"),
    ("output", dict(output="softmax"), "output must be one of"),
    ("baseline", dict(baseline=torch.zeros(3, 1, 4, 4)), "does not broadcast"),
    ("x", dict(x=torch.zeros(3, 1, 8, 8, dtype=torch.int64)), "floating tensor"),
    # A wrong type is a TypeError.
    ("steps float", dict(steps=4.0), r"steps must be an int >= 1, got 4.0 \(float\)", TypeError),
    ("ibs bool", dict(internal_batch_size=True), "internal_batch_size must be None or an int",
     TypeError),
    ("target bool", dict(target=True), r"integrated_gradients: target must be an int, .*\(bool\)",
     TypeError),
    ("target str", dict(target="1"), "integrated_gradients: target must be an int", TypeError),
    ("x list", dict(x=[[0.0]]), "integrated_gradients: x must be a floating tensor", TypeError),
], ids=lambda c: c[0])
def test_bad_input_raises_clear_error(case):
    _, override, match, *error = case
    args = dict(x=_x(3), target=1, steps=4)
    args.update(override)
    with pytest.raises(error[0] if error else ValueError, match=match):
        integrated_gradients(_cnn(), args.pop("x"), args.pop("target"), **args)


def test_bad_smoothgrad_arguments():
    model, x = _cnn(), _x(2)
    for kw, match in ((dict(samples=0), "samples"), (dict(stdev=-1.0), "stdev"),
                      (dict(method="x"), "method")):
        with pytest.raises(ValueError, match=match):
            smoothgrad(model, x, 1, **kw)
    for kw, match in ((dict(samples=2.0), "smoothgrad: samples must be an int"),
                      (dict(stdev="0.1"), "smoothgrad: stdev must be a finite number"),
                      (dict(internal_batch_size=1.5), "smoothgrad: internal_batch_size")):
        with pytest.raises(TypeError, match=match):
            smoothgrad(model, x, 1, **kw)
    with pytest.raises(TypeError, match="softplus_surrogate: beta must be a number > 0"):
        with softplus_surrogate(model, beta="1"):
            pass
