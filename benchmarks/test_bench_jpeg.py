"""pytest-benchmark: jpeg_compression through torchvision.io vs the reference (PIL, per image).

Run: python -m pytest benchmarks/test_bench_jpeg.py --benchmark-group-by=group

Both sides JPEG-encode and decode 256 CIFAR-sized (32 x 32 RGB, smooth random)
uint8 images at severity 2's quality (18); each benchmark first checks that its
output equals the reference's bit for bit. The project's own tensor codec
(eval/corruptions/jpeg_codec.py), removed for torchvision.io, was timed once
before its removal against torchvision on the same batches, in one process, on a
shared 2-core CPU (load average 13): 256 x 32 x 32 in 315 ms vs 99 ms (3.2x),
32 x 224 x 224 in 1910 ms vs 174 ms (11x); the PIL loop took ~200 ms for the
256 small images at load 10.
"""
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from robustops.eval.corruptions.jpeg_compression import jpeg_roundtrip

QUALITY = 18
SHAPE = (256, 3, 32, 32)


def _images() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(SHAPE[0], 3, 8, 8, generator=g)
    smooth = F.interpolate(noise, size=SHAPE[-2:], mode="bicubic", align_corners=False)
    return (smooth.clamp(0, 1) * 255).round().to(torch.uint8)


def _pil_roundtrip(imgs: torch.Tensor) -> torch.Tensor:
    """What imagecorruptions does per image: PIL save(JPEG, quality) then open."""
    from PIL import Image

    out = []
    for img in imgs.permute(0, 2, 3, 1).numpy():
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=QUALITY)
        out.append(np.asarray(Image.open(buf)))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)


@pytest.mark.parametrize("impl", ["torchvision.io batch", "PIL per image"])
def test_jpeg_roundtrip(benchmark, impl):
    pytest.importorskip("PIL")
    imgs = _images()
    fn = {"torchvision.io batch": lambda: jpeg_roundtrip(imgs, QUALITY),
          "PIL per image": lambda: _pil_roundtrip(imgs)}[impl]
    assert torch.equal(fn(), _pil_roundtrip(imgs))   # the reference it races, bit for bit
    benchmark.group = f"jpeg round trip q{QUALITY} {'x'.join(map(str, SHAPE))} uint8"
    benchmark.pedantic(fn, rounds=10, warmup_rounds=1)
