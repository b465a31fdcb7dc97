"""Tolerances and comparison helpers shared by the tests and the benchmarks.

One table of per-dtype tolerances for every op: float64 is near-exact, float32
allows reduction-order differences, half types allow one unit in the last place
of their storage format (kernels compute in float32 and round once).
"""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
import torch

# dtype -> (rtol, atol)
TOLERANCES: Dict[torch.dtype, Tuple[float, float]] = {
    torch.float64: (1e-10, 1e-12),
    torch.float32: (1e-5, 1e-6),
    torch.float16: (1e-3, 1e-3),
    torch.bfloat16: (8e-3, 8e-3),
}


def tolerance(dtype: torch.dtype) -> Tuple[float, float]:
    """(rtol, atol) for comparing a kernel's output of `dtype` with its reference."""
    try:
        return TOLERANCES[dtype]
    except KeyError:
        raise ValueError(f"no tolerance defined for {dtype}") from None


def assert_close(actual: torch.Tensor, expected: torch.Tensor, msg: str = "") -> None:
    """torch.testing.assert_close with robustops' tolerance for expected.dtype."""
    rtol, atol = tolerance(expected.dtype)
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, equal_nan=True,
                               msg=(lambda m: f"{msg}: {m}") if msg else None)


def skip_cuda_tests_without_gpu(items, skip_marker) -> None:
    """pytest_collection_modifyitems body shared by tests/ and benchmarks/: items marked
    `cuda` get `skip_marker` (pytest.mark.skip(...)) when no CUDA GPU is visible. (pytest
    is the caller's: the library does not import it.)"""
    if torch.cuda.is_available():
        return
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip_marker)


def vonenet_gabor_kernel(frequency, sigma_x, sigma_y, theta=0, offset=0, ks=61,
                         dtype=torch.float):
    """VOneNet's gabor_kernel (dicarlolab/vonenet, vonenet/utils.py), transcribed.

    The one change: the grid's dtype is an argument (VOneNet hard-codes torch.float).
    """
    w = ks // 2
    grid_val = torch.arange(-w, w + 1, dtype=dtype)
    x, y = torch.meshgrid(grid_val, grid_val, indexing="ij")  # VOneNet's default indexing
    rotx = x * np.cos(theta) + y * np.sin(theta)
    roty = -x * np.sin(theta) + y * np.cos(theta)
    g = torch.zeros(y.shape, dtype=dtype)
    g[:] = torch.exp(-0.5 * (rotx ** 2 / sigma_x ** 2 + roty ** 2 / sigma_y ** 2))
    g /= 2 * np.pi * sigma_x * sigma_y
    g *= torch.cos(2 * np.pi * frequency * rotx + offset)
    return g


def write_part_imagenet_folder(root, splits=("train", "test"), per_class: int = 2,
                               size: int = 16):
    """A tiny PartImageNet-format folder at root (tests of the part_imagenet dataset):
    root/images/<split>/<wnid>/<file>.png and root/annotations/<split>.json, two
    classes ('Quadruped': head, body; 'Car': tire) of per_class size x size images each,
    every part a polygon rectangle; the last Quadruped image of each split has no
    annotation (no mask). Returns root."""
    import json
    import pathlib

    from PIL import Image

    root = pathlib.Path(root)
    rng = np.random.default_rng(0)
    categories = [{"id": 0, "name": "Quadruped Head", "supercategory": "Quadruped"},
                  {"id": 1, "name": "Quadruped Body", "supercategory": "Quadruped"},
                  {"id": 2, "name": "Car Tire", "supercategory": "Car"}]
    s = size

    def box(c0, r0, c1, r1):
        return [[c0, r0, c1, r0, c1, r1, c0, r1]]

    for split in splits:
        images, annotations = [], []
        for wnid, parts in (("n01", ((1, box(1, 1, s // 2, s - 2)), (0, box(s // 2, 2, s - 2, 6)))),
                            ("n02", ((2, box(2, s // 2, s - 2, s - 1)),))):
            (root / "images" / split / wnid).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                image_id = len(images) + 1
                name = f"{wnid}_{i}.png"
                Image.fromarray(rng.integers(0, 256, (s, s, 3), dtype=np.uint8)).save(
                    root / "images" / split / wnid / name)
                images.append({"id": image_id, "file_name": name, "height": s, "width": s})
                if wnid == "n01" and i == per_class - 1 and per_class > 1:
                    continue  # no annotation: its class comes from its folder
                for category, seg in parts:
                    annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                        "category_id": category, "segmentation": seg})
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"{split}.json").write_text(json.dumps(
            {"images": images, "categories": categories, "annotations": annotations}))
    return root


def small_conv_classifier(seed: int = 0, classes: int = 10) -> torch.nn.Module:
    """A tiny conv net (3 -> 8 channels, pooled to 4x4, linear to `classes`) in eval mode,
    seeded: any image size works (the attack and normalisation tests' model)."""
    from torch import nn

    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
                         nn.Flatten(), nn.Linear(128, classes)).eval()
