"""The shape-bias study end to end at toy size: trains both models, writes the report."""
import json
import math

import pytest
import torch


def test_shape_study_writes_report(tmp_path):
    from robustops.studies.shape_bias_at import run

    res = run(tmp_path, n_train=256, n_test=64, epochs=1, corruption_samples=16,
              corruptions=("gaussian_noise", "contrast"), progress=False)
    assert set(res) == {"standard", "pgd_trained"}
    for r in res.values():
        assert 0 <= r["clean_accuracy"] <= 1 and r["tv_normalized"]
    text = (tmp_path / "report.md").read_text()
    for piece in ("shape bias", "corruptions.png", "shape_bias.png", "Smoothness",
                  "Neurons of layer", "dissection_units.png"):
        assert piece in text
    for r in res.values():
        n = r["neurons"]
        assert n["shape_units"] + n["texture_units"] + n["unlabelled_units"] == n["units"]
        assert n["both_correct_images"] <= 64
        # After one toy epoch the models may share no correct image: then NaN, not a number.
        for key in ("accuracy_without_shape_units", "accuracy_without_texture_units"):
            if n["both_correct_images"]:
                assert 0 <= n[key] <= 1, key
            else:
                assert math.isnan(n[key]), key
        sel = n["selectivity_mean"]
        assert math.isnan(sel) or 0 <= sel <= 1
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["pgd_trained"]["shape_bias"] == pytest.approx(res["pgd_trained"]["shape_bias"],
                                                                nan_ok=True)
    # A second run resumes from the finished checkpoints instead of retraining.
    res2 = run(tmp_path, n_train=256, n_test=64, epochs=1, corruption_samples=16,
               corruptions=("gaussian_noise",), progress=False)
    assert res2["standard"]["clean_accuracy"] == res["standard"]["clean_accuracy"]


def test_concept_masks_follow_labels():
    from robustops.data.shapes import make_shapes
    from robustops.studies.shape_bias_at import concept_masks

    d = make_shapes(40, split="test", mode="cue_conflict", seed=1)
    masks = concept_masks(d, d.class_names, d.texture_names)
    assert len(masks) == len(d.class_names) + len(d.texture_names)
    shape_sum = sum(m.long() for k, m in masks.items() if k.startswith("shape:"))
    # Each shape pixel belongs to exactly one shape concept (its image's class).
    assert torch.equal(shape_sum.bool(), d.shape_mask[:, 0]) and shape_sum.max() <= 1
    i = 3
    name = d.class_names[int(d.shape_labels[i])]
    assert torch.equal(masks[f"shape:{name}"][i], d.shape_mask[i, 0])
    tname = d.texture_names[int(d.texture_labels[i])]
    assert torch.equal(masks[f"texture:{tname}"][i], d.texture_mask[i, 0])
