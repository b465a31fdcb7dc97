"""Model zoo: output shapes, stems, gradients, memory formats, validation, determinism."""
import pytest
import torch
from torch import nn

from robustops.models import (MODEL_NAMES, SmallCNN, alexnet, build_model, googlenet, resnet18,
                              resnet50, small_cnn_cifar, small_cnn_mnist)

NUM_CLASSES = 7  # not 10 or 1000, so a head left at a default size shows up


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


def _state(model: nn.Module) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_model_names_cover_every_builder():
    assert MODEL_NAMES == ("small_cnn", "alexnet", "googlenet", "resnet18", "resnet50")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_small_input_32px_shape(name):
    torch.manual_seed(0)
    model = build_model(name, NUM_CLASSES, small_input=True)
    y = _logits(model, torch.rand(2, 3, 32, 32))
    assert y.shape == (2, NUM_CLASSES)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", ["small_cnn", "resnet18"])
def test_small_input_28px_one_channel_shape(name):
    torch.manual_seed(0)
    model = build_model(name, NUM_CLASSES, small_input=True, in_channels=1)
    y = _logits(model, torch.rand(2, 1, 28, 28))
    assert y.shape == (2, NUM_CLASSES)


def test_resnet18_imagenet_size_keeps_torchvision_stem():
    torch.manual_seed(0)
    model = build_model("resnet18", NUM_CLASSES)
    assert model.conv1.kernel_size == (7, 7) and model.conv1.stride == (2, 2)
    assert isinstance(model.maxpool, nn.MaxPool2d)
    assert _logits(model, torch.rand(1, 3, 224, 224)).shape == (1, NUM_CLASSES)


def test_in_channels_keeps_stem_geometry_without_small_input():
    model = resnet18(NUM_CLASSES, in_channels=1)
    assert model.conv1.in_channels == 1
    assert model.conv1.kernel_size == (7, 7) and model.conv1.stride == (2, 2)
    assert model.conv1.bias is None


@pytest.mark.parametrize("build, stem", [
    (alexnet, lambda m: m.features[0]),
    (googlenet, lambda m: m.conv1.conv),
    (resnet18, lambda m: m.conv1),
    (resnet50, lambda m: m.conv1),
])
def test_small_input_stem_is_3x3_stride_1(build, stem):
    conv = stem(build(NUM_CLASSES, small_input=True, in_channels=2))
    assert (conv.in_channels, conv.kernel_size, conv.stride) == (2, (3, 3), (1, 1))


def test_small_input_drops_early_pools():
    assert isinstance(resnet18(NUM_CLASSES, small_input=True).maxpool, nn.Identity)
    net = googlenet(NUM_CLASSES, small_input=True)
    assert isinstance(net.maxpool1, nn.Identity) and isinstance(net.maxpool2, nn.Identity)


def test_googlenet_train_mode_returns_plain_logits():
    torch.manual_seed(0)
    net = googlenet(NUM_CLASSES, small_input=True).train()
    y = net(torch.rand(2, 3, 32, 32))
    assert isinstance(y, torch.Tensor) and y.shape == (2, NUM_CLASSES)


@pytest.mark.parametrize("factory, shape", [(small_cnn_mnist, (1, 28, 28)),
                                            (small_cnn_cifar, (3, 32, 32))])
def test_small_cnn_factories(factory, shape):
    model = factory()
    assert _logits(model, torch.rand(2, *shape)).shape == (2, 10)
    assert factory(num_classes=3).num_classes == 3


def test_small_cnn_backward_gives_finite_gradients_on_every_parameter():
    torch.manual_seed(0)
    model = small_cnn_cifar(NUM_CLASSES)
    x = torch.rand(4, 3, 32, 32, requires_grad=True)
    loss = nn.functional.cross_entropy(model(x), torch.arange(4) % NUM_CLASSES)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    # Attacks differentiate with respect to the input, so it needs a gradient too.
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("build", [
    lambda: SmallCNN(in_channels=3, num_classes=NUM_CLASSES, image_size=32),
    lambda: resnet18(NUM_CLASSES, small_input=True),
], ids=["small_cnn", "resnet18"])
def test_channels_last_input_matches_contiguous(build):
    torch.manual_seed(0)
    model = build()
    x = torch.rand(2, 3, 32, 32)
    expected = _logits(model, x)
    x_cl = x.to(memory_format=torch.channels_last)
    assert not x_cl.is_contiguous()
    torch.testing.assert_close(_logits(model, x_cl), expected, rtol=1e-4, atol=1e-5)
    model_cl = model.to(memory_format=torch.channels_last)
    torch.testing.assert_close(_logits(model_cl, x_cl), expected, rtol=1e-4, atol=1e-5)


def test_unknown_name_lists_known_models():
    with pytest.raises(ValueError, match=r"unknown model 'vgg16'.*small_cnn.*resnet50"):
        build_model("vgg16", NUM_CLASSES)


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("kwargs, message", [
    (dict(num_classes=0), "num_classes must be an integer >= 1, got 0"),
    (dict(num_classes=NUM_CLASSES, in_channels=0), "in_channels must be an integer >= 1, got 0"),
    (dict(num_classes=-3), "num_classes must be an integer >= 1, got -3"),
])
def test_bad_sizes_raise_value_error(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_model(name, **kwargs)


def test_builders_validate_without_registry():
    with pytest.raises(ValueError, match="num_classes must be"):
        resnet18(num_classes=0)
    with pytest.raises(ValueError, match="in_channels must be"):
        alexnet(in_channels=0)


def test_small_cnn_rejects_bad_image_sizes():
    with pytest.raises(ValueError, match="image_size must be >= 16"):
        SmallCNN(image_size=8)
    model = SmallCNN(in_channels=1, image_size=28)
    with pytest.raises(ValueError, match=r"expects \(B, 1, 28, 28\) inputs, got \(2, 1, 32, 32\)"):
        model(torch.rand(2, 1, 32, 32))


@pytest.mark.parametrize("name", ["small_cnn", "googlenet", "resnet18"])
def test_same_seed_gives_identical_weights(name):
    states = []
    for seed in (123, 123, 124):
        torch.manual_seed(seed)
        states.append(_state(build_model(name, NUM_CLASSES, small_input=True, in_channels=1)))
    first, same, other = states
    assert first.keys() == same.keys()
    assert all(torch.equal(first[k], same[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first
               if first[k].is_floating_point() and first[k].dim() > 1)
