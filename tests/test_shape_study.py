"""The shape-bias study end to end at toy size: trains both models, writes the report."""
import json

import pytest


def test_shape_study_writes_report(tmp_path):
    from robustops.studies.shape_bias_at import run

    res = run(tmp_path, n_train=256, n_test=64, epochs=1, corruption_samples=16,
              corruptions=("gaussian_noise", "contrast"), progress=False)
    assert set(res) == {"standard", "pgd_trained"}
    for r in res.values():
        assert 0 <= r["clean_accuracy"] <= 1 and r["tv_normalized"]
    text = (tmp_path / "report.md").read_text()
    for piece in ("shape bias", "corruptions.png", "shape_bias.png", "Smoothness"):
        assert piece in text
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["pgd_trained"]["shape_bias"] == pytest.approx(res["pgd_trained"]["shape_bias"],
                                                                nan_ok=True)
    # A second run resumes from the finished checkpoints instead of retraining.
    res2 = run(tmp_path, n_train=256, n_test=64, epochs=1, corruption_samples=16,
               corruptions=("gaussian_noise",), progress=False)
    assert res2["standard"]["clean_accuracy"] == res["standard"]["clean_accuracy"]
