"""The V1 ensemble study end to end at toy size: trains members and student, writes the report."""
import json


def test_v1_study_writes_report(tmp_path):
    from robustops.studies.v1_ensemble import run

    res = run(tmp_path, n_train=128, n_test=32, epochs=1, corruption_samples=8,
              corruptions=("gaussian_noise", "fog"), progress=False)
    assert list(res) == ["low_sf", "high_sf", "noise_high", "ensemble", "distilled"]
    for r in res.values():
        assert 0 <= r["clean_accuracy"] <= 1 and 0 <= r["corruption_mean_accuracy"] <= 1
        assert set(r["corruption_per_type"]) == {"gaussian_noise", "fog"}
    text = (tmp_path / "report.md").read_text()
    assert "distilled" in text and "corruptions.png" in text
    assert json.loads((tmp_path / "results.json").read_text())["ensemble"]["clean_accuracy"] == \
        res["ensemble"]["clean_accuracy"]
    # Checkpoints of every trained model: a rerun resumes instead of retraining.
    for name in ("low_sf", "high_sf", "noise_high", "distilled"):
        assert (tmp_path / name / "model.safetensors").exists()
    again = run(tmp_path, n_train=128, n_test=32, epochs=1, corruption_samples=8,
                corruptions=("gaussian_noise", "fog"), progress=False)
    assert again["low_sf"]["clean_accuracy"] == res["low_sf"]["clean_accuracy"]
