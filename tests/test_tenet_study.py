"""The TENET study end to end at toy size: four runs, report.md and results.json, resume."""
import json

import pytest

# SIZES["tiny"] (128 training images, 1 epoch; the low-data runs: 32 images, 2 epochs), 16 px.
TOY = dict(tiny=True, low_data_epochs=2, batch_size=32, image_size=16, tenet_start=0.25,
           corruptions=("gaussian_noise", "fog"), progress=False)


def test_tenet_study_writes_report_and_resumes(tmp_path, monkeypatch):
    from robustops.studies import tenet
    from robustops.train import Trainer

    res = tenet.run(tmp_path, **TOY)
    assert list(res) == ["ce_full", "tenet_full", "ce_10pct", "tenet_10pct"]
    for r in res.values():
        assert 0 <= r["clean_accuracy"] <= 1 and 0 <= r["corruption_mean_accuracy"] <= 1
        assert set(r["corruption_per_type"]) == {"gaussian_noise", "fog"}
    assert res["ce_10pct"]["n_train"] == 32 and res["ce_10pct"]["epochs"] == 2
    text = (tmp_path / "report.md").read_text()
    assert "TENET - CE (10%)" in text and "corruption_mean.png" in text
    assert (tmp_path / "corruption_mean.png").exists()
    assert json.loads((tmp_path / "results.json").read_text()) == res
    cfg = json.loads((tmp_path / "tenet_full" / "config.json").read_text())
    assert cfg["objective"] == "tenet" and cfg["tenet_warmup_iters"] == 1
    for name in res:
        assert (tmp_path / name / "model.safetensors").exists()
        assert (tmp_path / name / "eval.json").exists()

    # A rerun trains and evaluates nothing: every run is finished.
    def no_training(self):
        raise AssertionError("retrained a finished run")

    monkeypatch.setattr(Trainer, "fit", no_training)
    monkeypatch.setattr(tenet, "corruption_accuracy", no_training)
    assert tenet.run(tmp_path, **TOY) == res
    # Other settings in the same folder are refused.
    with pytest.raises(ValueError, match="other settings"):
        tenet.run(tmp_path, **{**TOY, "epochs": 2})
