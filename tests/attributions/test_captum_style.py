"""captum-shaped IntegratedGradients / Saliency / InputXGradient: the values of captum.attr's
classes for the same calls, and what captum has but these lack refused clearly."""
import pytest
import torch
from torch import nn

from robustops.attributions import METHODS, InputXGradient, IntegratedGradients, Saliency

captum_attr = pytest.importorskip("captum.attr")


def _cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).eval()


def _x(b=3):
    return torch.rand(b, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def _close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_integrated_gradients_matches_captum_for_every_method(method):
    model, x = _cnn(), _x()
    y = torch.tensor([0, 3, 4])
    base = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    kw = dict(baselines=base, target=y, n_steps=12, method=method)
    _close(IntegratedGradients(model).attribute(x, **kw),
           captum_attr.IntegratedGradients(model).attribute(x.clone(), **kw))


def test_integrated_gradients_defaults_targets_baselines_and_chunks_match_captum():
    model, x = _cnn(), _x()
    ours, ref = IntegratedGradients(model), captum_attr.IntegratedGradients(model)
    # captum's default quadrature (gausslegendre, 50 steps) and zero baselines.
    _close(ours.attribute(x, target=2), ref.attribute(x.clone(), target=2))
    for target in ([1, 2, 3], torch.tensor(4), torch.tensor([4, 0, 1])):
        _close(ours.attribute(x, target=target, n_steps=8),
               ref.attribute(x.clone(), target=target, n_steps=8))
    _close(ours.attribute(x, baselines=0.5, target=1, n_steps=8, internal_batch_size=7),
           ref.attribute(x.clone(), baselines=0.5, target=1, n_steps=8, internal_batch_size=7))
    (a,) = ours.attribute((x,), baselines=(torch.zeros_like(x),), target=1, n_steps=8)
    (r,) = ref.attribute((x.clone(),), baselines=(torch.zeros_like(x),), target=1, n_steps=8)
    _close(a, r)


def test_convergence_delta_matches_captum():
    model, x = _cnn(), _x()
    a, d = IntegratedGradients(model).attribute(x, target=[0, 1, 2], n_steps=16,
                                                return_convergence_delta=True)
    ra, rd = captum_attr.IntegratedGradients(model).attribute(
        x.clone(), target=[0, 1, 2], n_steps=16, return_convergence_delta=True)
    _close(a, ra)
    assert d.shape == (3,)
    torch.testing.assert_close(d, rd.to(d.dtype), rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("abs_", [True, False])
def test_saliency_and_input_x_gradient_match_captum(abs_):
    model, x = _cnn(), _x()
    y = torch.tensor([1, 0, 2])
    _close(Saliency(model).attribute(x, target=y, abs=abs_),
           captum_attr.Saliency(model).attribute(x.clone(), target=y, abs=abs_))
    _close(InputXGradient(model).attribute(x, target=3),
           captum_attr.InputXGradient(model).attribute(x.clone(), target=3))
    # target=None: the predicted class (captum needs an explicit one for a (B, K) model).
    _close(Saliency(model).attribute(x), Saliency(model).attribute(x, target=model(x).argmax(1)))


def test_what_captum_has_and_these_lack_is_refused():
    model, x = _cnn(), _x()
    with pytest.raises(ValueError, match="method 'riemann_foo' is not supported; choose one of "
                                         "riemann_right"):
        IntegratedGradients(model).attribute(x, target=0, method="riemann_foo")
    with pytest.raises(ValueError, match="multiply_by_inputs=False is not supported"):
        IntegratedGradients(model, multiply_by_inputs=False)
    with pytest.raises(ValueError, match="additional_forward_args is not supported"):
        Saliency(model).attribute(x, target=0, additional_forward_args=(1,))
    with pytest.raises(ValueError, match="a tuple of 2; models of several input tensors"):
        InputXGradient(model).attribute((x, x), target=0)
    with pytest.raises(ValueError, match="tuple targets"):
        Saliency(model).attribute(x, target=(0, 1))
    with pytest.raises(TypeError, match="forward_func must be a callable"):
        Saliency("model")
    # A list target holds one int per sample: a tuple or a bool in it is a wrong type.
    with pytest.raises(TypeError, match=r"Saliency.attribute: target\[1\] must be an int .*"
                                        r"tuples, are not supported\), got \(0, 1\)"):
        Saliency(model).attribute(x, target=[0, (0, 1), 2])
    with pytest.raises(TypeError, match=r"target\[0\] must be an int .*got True \(bool\)"):
        Saliency(model).attribute(x, target=[True, 1, 2])
