"""Shape bias: hand-computed values, the 16-class mapping, and the cue-conflict folder loader."""
import math

import pytest
import torch
from torch import nn

from robustops.eval.shape_bias import (CATEGORIES_16, IMAGENET_16, evaluate_shape_bias,
                                       imagenet_to_16, load_cue_conflict_folder, shape_bias)


def test_hand_computed_shape_bias():
    shape = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    texture = torch.tensor([1, 2, 0, 1, 3, 0, 3, 1])  # index 3 (1 -> 1) and 6 (3 -> 3) dropped
    pred = torch.tensor([0, 2, 1, 5, 3, 2, 3, 1])
    # kept: (0,1)->0 shape; (0,2)->2 texture; (1,0)->1 shape; (2,3)->3 texture;
    # (2,0)->2 shape; (3,1)->1 texture  => 3 shape, 3 texture
    res = shape_bias(pred, shape, texture)
    assert res.n_used == 6 and res.n_dropped == 2
    assert res.shape_bias == pytest.approx(3 / 6)
    assert res.shape_fraction == pytest.approx(3 / 6) and res.texture_fraction == pytest.approx(3 / 6)
    assert res.per_category["0"] == pytest.approx(1 / 2)
    assert res.per_category["1"] == pytest.approx(1.0)
    assert res.per_category["2"] == pytest.approx(1 / 2)
    assert res.per_category["3"] == 0.0
    pred2 = torch.tensor([0, 0, 1, 9, 2, 2, 9, 3])
    assert shape_bias(pred2, shape, texture).shape_bias == 1.0


def test_neither_shape_nor_texture_gives_nan_and_all_equal_raises():
    s, t = torch.tensor([0, 1]), torch.tensor([1, 0])
    assert math.isnan(shape_bias(torch.tensor([5, 5]), s, t).shape_bias)
    with pytest.raises(ValueError, match="shape == texture"):
        shape_bias(torch.tensor([0]), torch.tensor([0]), torch.tensor([0]))


def test_imagenet_mapping():
    assert len(CATEGORIES_16) == 16 and set(IMAGENET_16) == set(CATEGORIES_16)
    flat = [i for v in IMAGENET_16.values() for i in v]
    assert len(flat) == len(set(flat)) and all(0 <= i < 1000 for i in flat)
    logits = torch.full((2, 1000), -10.0)
    logits[0, 385] = 10  # elephant
    logits[1, 200] = 10  # a dog breed
    cats = imagenet_to_16(logits).argmax(1)
    assert [CATEGORIES_16[c] for c in cats] == ["elephant", "dog"]
    with pytest.raises(ValueError, match="1000"):
        imagenet_to_16(torch.zeros(2, 10))


def test_evaluate_with_a_model_and_restores_mode():
    class Oracle(nn.Module):
        """Predicts the label written in the top-left pixel: a pure 'shape' model."""
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return nn.functional.one_hot((x[:, 0, 0, 0] * 10).round().long(), 16).float() + self.w

    s = torch.tensor([1, 2, 3, 4])
    t = torch.tensor([2, 3, 4, 1])
    x = torch.zeros(4, 3, 8, 8)
    x[:, 0, 0, 0] = s.float() / 10
    m = Oracle().train()
    assert evaluate_shape_bias(m, x, s, t, batch_size=3).shape_bias == 1.0
    assert m.training


def test_cue_conflict_folder(tmp_path):
    from PIL import Image
    import numpy as np
    (tmp_path / "cat").mkdir()
    (tmp_path / "dog").mkdir()
    for name in ("cat/cat1-dog2.png", "dog/dog3-cat1.png", "cat/cat2-cat2.png"):
        Image.fromarray(np.full((10, 12, 3), 128, np.uint8)).save(tmp_path / name)
    (tmp_path / "dog" / "notes.txt").write_text("ignored")
    x, s, t, cats = load_cue_conflict_folder(tmp_path, image_size=16)
    assert x.shape == (3, 3, 16, 16) and x.max() <= 1
    i_cat, i_dog = CATEGORIES_16.index("cat"), CATEGORIES_16.index("dog")
    assert sorted(zip(s.tolist(), t.tolist())) == sorted([(i_cat, i_dog), (i_dog, i_cat), (i_cat, i_cat)])
    (tmp_path / "cat" / "cat9-dog9.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="not a readable image"):
        load_cue_conflict_folder(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_cue_conflict_folder(tmp_path / "missing")
