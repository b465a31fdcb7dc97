"""Normalize / normalized: equal to torchvision's Normalize, following the input's dtype and
device, weights loading as before, bad mean/std refused with what is wrong."""
import pytest
import torch
from torch import nn

import robustops
from robustops.nn import Normalize, normalized
from robustops.testing import assert_close

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(5))


def test_equals_torchvision_normalize_per_channel():
    tv = pytest.importorskip("torchvision.transforms")
    x = torch.rand(2, 3, 5, 7)
    assert_close(Normalize(MEAN, STD)(x), tv.Normalize(MEAN, STD)(x))


def test_one_value_serves_every_channel_and_tensors_are_accepted():
    x = torch.rand(2, 3, 4, 4)
    assert_close(Normalize(0.5, 0.25)(x), (x - 0.5) / 0.25)
    assert_close(Normalize(torch.tensor(MEAN), 0.2)(x),
                 (x - torch.tensor(MEAN)[:, None, None]) / 0.2)
    assert Normalize(0.1307, 0.3081)(torch.rand(1, 1, 2, 2)).shape == (1, 1, 2, 2)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_dtype_follows_the_input(dtype):
    x = torch.rand(2, 3, 4, 4, dtype=dtype)
    out = Normalize(MEAN, STD)(x)
    ref = (x.double() - torch.tensor(MEAN, dtype=torch.float64)[:, None, None]) \
        / torch.tensor(STD, dtype=torch.float64)[:, None, None]
    assert out.dtype == dtype
    assert_close(out, ref.to(dtype))


@pytest.mark.cuda
def test_device_follows_the_input():
    x = torch.rand(2, 3, 4, 4, device="cuda")
    layer = Normalize(MEAN, STD)  # buffers left on the CPU: the input decides
    assert_close(layer(x).cpu(), layer(x.cpu()))


def test_normalized_model_equals_model_on_normalised_inputs_and_loads_its_weights():
    model = _net()
    x = torch.rand(3, 3, 8, 8)
    net = normalized(model, MEAN, STD)
    assert_close(net(x), model((x - torch.tensor(MEAN)[:, None, None])
                               / torch.tensor(STD)[:, None, None]))
    assert net.model is model and isinstance(net.normalize, Normalize)
    # mean/std are configuration, not weights: the state_dict holds the model's tensors only.
    assert set(net.state_dict()) == {f"model.{k}" for k in model.state_dict()}
    other = _net()
    other(x)  # materialise the lazy layer
    normalized(other, MEAN, STD).load_state_dict(net.state_dict())
    assert_close(normalized(other, MEAN, STD)(x), net(x))
    assert robustops.normalized is normalized and robustops.Normalize is Normalize


def test_gradients_reach_the_pixels():
    net = normalized(_net(), MEAN, STD)
    x = torch.rand(2, 3, 8, 8, requires_grad=True)
    net(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_inverse_and_bounds():
    layer = Normalize(MEAN, STD)
    x = torch.rand(2, 3, 4, 4)
    assert_close(layer.inverse(layer(x)), x)
    lo, hi = layer.bounds()
    assert lo.shape == hi.shape == (3,)
    m, s = torch.tensor(MEAN, dtype=torch.float64), torch.tensor(STD, dtype=torch.float64)
    assert_close(lo, -m / s)
    assert_close(hi, (1 - m) / s)
    z = layer(x)
    assert bool((z >= lo[:, None, None] - 1e-6).all() and (z <= hi[:, None, None] + 1e-6).all())


def test_moves_with_the_module_and_prints_its_values():
    layer = Normalize(MEAN, STD).float()
    assert layer.mean.dtype == torch.float32 and layer(torch.rand(1, 3, 2, 2)).dtype == torch.float32
    assert "mean=(0.4914, 0.4822, 0.4465)" in repr(layer)


def test_attack_on_the_wrapped_model_stays_in_the_pixel_box():
    from robustops.attacks import PGD

    torch.manual_seed(0)
    net = normalized(nn.Sequential(nn.Flatten(), nn.Linear(48, 5)), MEAN, STD).eval()
    x, y = torch.rand(4, 3, 4, 4), torch.randint(0, 5, (4,))
    eps = 8 / 255
    adv = PGD(net, eps=eps, steps=3, alpha=eps / 2, norm="linf")(x, y)
    assert float((adv - x).abs().max()) <= eps + 1e-6
    assert float(adv.min()) >= 0 and float(adv.max()) <= 1


@pytest.mark.parametrize("mean, std, err, match", [
    ((0.5, 0.5), (0.2, 0.2, 0.2), ValueError, "mean has 2 values and std 3"),
    (MEAN, (0.2, 0.0, 0.2), ValueError, r"std must be > 0 .*channel 1"),
    (MEAN, (0.2, -1.0, 0.2), ValueError, "std must be > 0"),
    ((0.5, float("nan"), 0.5), STD, ValueError, r"mean must be finite.*channel 1"),
    (MEAN, (0.2, 0.2, float("inf")), ValueError, "std must be finite"),
    ((), STD, ValueError, "one value per channel"),
    ([[0.5, 0.5]], STD, ValueError, "one value per channel"),
    ("0.5", STD, TypeError, "mean must be a float"),
    (MEAN, ["a", "b", "c"], TypeError, "std must be a float"),
])
def test_bad_mean_or_std_is_refused(mean, std, err, match):
    with pytest.raises(err, match=match):
        Normalize(mean, std)


def test_channel_mismatch_and_bad_inputs_are_refused():
    with pytest.raises(ValueError, match=r"mean/std have 3 channels but the input has shape "
                                         r"\(2, 1, 4, 4\)"):
        Normalize(MEAN, STD)(torch.rand(2, 1, 4, 4))
    with pytest.raises(TypeError, match="floating tensor"):
        Normalize(MEAN, STD)(torch.zeros(2, 3, 4, 4, dtype=torch.uint8))
    with pytest.raises(TypeError, match="must be an nn.Module"):
        normalized(lambda x: x, MEAN, STD)
