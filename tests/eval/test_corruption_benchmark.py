"""Corruption accuracy, mCE / relative mCE by hand, the CIFAR-10-C loader, smoothness, reports."""
import numpy as np
import pytest
import torch
from torch import nn

from robustops.eval.activation_smoothness import activation_smoothness, total_variation
from robustops.eval.corruption_benchmark import (CorruptionAccuracy, corruption_accuracy,
                                                 load_cifar10_c, mce, relative_mce)
from robustops.eval.report import Report, plot_bars, plot_corruption_accuracy, plot_image_grid


def _tiny_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 3)).eval()


def test_mce_and_relative_mce_by_hand():
    model = CorruptionAccuracy(clean=0.9, n=10, accuracy={"a": [0.8, 0.6], "b": [0.5, 0.5]})
    base = CorruptionAccuracy(clean=0.8, n=10, accuracy={"a": [0.6, 0.4], "b": [0.4, 0.2]})
    m, ce = mce(model, base)
    assert ce["a"] == pytest.approx((0.2 + 0.4) / (0.4 + 0.6))
    assert ce["b"] == pytest.approx((0.5 + 0.5) / (0.6 + 0.8))
    assert m == pytest.approx((ce["a"] + ce["b"]) / 2)
    r, rce = relative_mce(model, base)
    assert rce["a"] == pytest.approx((0.1 + 0.3) / (0.2 + 0.4))
    assert model.mean() == pytest.approx(0.6)


def test_corruption_accuracy_is_consistent_and_batch_independent():
    model = _tiny_cnn()
    x = torch.rand(20, 3, 16, 16)
    with torch.no_grad():
        y = model(x).argmax(1)  # clean accuracy 1 by construction
    a = corruption_accuracy(model, (x, y), corruptions=["gaussian_noise"], batch_size=7,
                            progress=False)
    b = corruption_accuracy(model, (x, y), corruptions=["gaussian_noise"], batch_size=20,
                            progress=False)
    assert a.clean == 1.0 and a.n == 20
    assert a.accuracy == b.accuracy
    assert len(a.accuracy["gaussian_noise"]) == 5
    with pytest.raises(ValueError, match="unknown corruptions"):
        corruption_accuracy(model, (x, y), corruptions=["rain"], progress=False)
    with pytest.raises(ValueError, match="severities"):
        corruption_accuracy(model, (x, y), severities=[6], progress=False)


def test_load_cifar10_c(tmp_path):
    imgs = np.random.randint(0, 256, (5 * 4, 32, 32, 3), dtype=np.uint8)
    np.save(tmp_path / "fog.npy", imgs)
    np.save(tmp_path / "labels.npy", np.arange(20) % 10)
    x, y = load_cifar10_c(tmp_path, "fog", 3)
    assert x.shape == (4, 3, 32, 32) and x.max() <= 1
    assert torch.equal(x, torch.from_numpy(imgs[8:12]).permute(0, 3, 1, 2).float() / 255)
    assert y.tolist() == [8, 9, 0, 1]
    with pytest.raises(FileNotFoundError):
        load_cifar10_c(tmp_path, "snow", 1)
    (tmp_path / "bad.npy").write_bytes(b"garbage")
    with pytest.raises(ValueError):
        load_cifar10_c(tmp_path, "bad", 1)


def test_total_variation_and_smoothness():
    a = torch.zeros(1, 1, 3, 3)
    a[0, 0, 1, 1] = 1.0
    assert total_variation(a).item() == 4.0
    model = _tiny_cnn()
    res = activation_smoothness(model, torch.rand(6, 3, 16, 16))
    assert set(res) == {"0"} and res["0"]["tv"] > 0 and 0 < res["0"]["tv_normalized"] < 4
    noisy = activation_smoothness(model, torch.full((6, 3, 16, 16), 0.5), noise_std=0.2)
    flat = activation_smoothness(model, torch.full((6, 3, 16, 16), 0.5))
    assert noisy["0"]["tv"] > flat["0"]["tv"]
    with pytest.raises(ValueError, match="no such layers"):
        activation_smoothness(model, torch.rand(2, 3, 8, 8), layers=["nope"])


def test_report_writes_markdown_and_pngs(tmp_path):
    r = Report(tmp_path / "rep", "Test report")
    res = {"m1": CorruptionAccuracy(0.9, {"fog": [0.8, 0.7, 0.6, 0.5, 0.4]}, 10),
           "m2": CorruptionAccuracy(0.8, {"fog": [0.7, 0.7, 0.6, 0.6, 0.5]}, 10)}
    r.heading("Corruptions").table(["model", "clean"], [["m1", 0.9], ["m2", 0.8]], n=10)
    r.figure(plot_corruption_accuracy(res), "corruptions", "accuracy per severity")
    r.figure(plot_bars({"m1": 0.3, "m2": 0.6}, "shape bias", "Shape bias"), "shape_bias")
    r.figure(plot_image_grid(torch.rand(5, 3, 8, 8), [str(i) for i in range(5)]), "examples")
    path = r.write()
    text = path.read_text()
    assert "| m1 | 0.900 |" in text and "*n = 10*" in text and "![accuracy per severity](corruptions.png)" in text
    for name in ("corruptions", "shape_bias", "examples"):
        png = tmp_path / "rep" / f"{name}.png"
        assert png.read_bytes()[:4] == b"\x89PNG"
