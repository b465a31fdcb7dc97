"""The part-model study end to end at toy size: four models trained, measured and reported."""
import json

import pytest


@pytest.mark.slow
def test_part_study_writes_report(tmp_path):
    from robustops.studies.part_models import run

    kw = dict(n_train=32, n_test=16, epochs=1, adv_epochs=1, pgd_steps=1, pgd_eval_steps=1,
              corruption_samples=8, corruptions=("gaussian_noise",), batch_size=16, seg_width=4,
              progress=False)
    res = run(tmp_path, **kw)
    assert list(res) == ["part_clean", "cnn_clean", "part_pgd", "cnn_pgd"]
    for r in res.values():
        for key in ("clean_accuracy", "pgd_accuracy", "corruption_mean_accuracy",
                    "spurious_aligned_accuracy", "spurious_conflict_accuracy"):
            assert 0 <= r[key] <= 1
    assert 0 <= res["part_clean"]["part_pixel_accuracy"] <= 1
    assert "part_pgd" in (tmp_path / "report.md").read_text()
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["results"]["cnn_pgd"]["clean_accuracy"] == res["cnn_pgd"]["clean_accuracy"]
    with pytest.raises(ValueError, match="adv_objective must be one of"):
        run(tmp_path, adv_objective="fgsm")
