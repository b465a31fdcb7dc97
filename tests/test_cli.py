"""The `robustops train` and `robustops eval` commands end to end on the sklearn digits."""
import json
import subprocess
import sys

import pytest


def _run(*args, timeout=600):
    res = subprocess.run([sys.executable, "-m", "robustops", *args], capture_output=True, text=True,
                         timeout=timeout)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def test_train_resume_and_eval(tmp_path):
    pytest.importorskip("sklearn")
    out = tmp_path / "run"
    common = ["--dataset", "digits", "--objective", "pgd_at", "--steps", "2", "--eps", "0.1",
              "--batch-size", "64", "--eval-every", "1", "--eval-samples", "64", "--eval-steps", "3",
              "--out", str(out)]
    _run("train", "--epochs", "1", *common)
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("eval" in r for r in lines)
    stdout = _run("train", "--epochs", "2", *common)  # a longer run resumes the shorter one
    assert "resuming" in stdout and "epoch 2" in stdout
    stdout = _run("eval", "--dataset", "digits", "--weights", str(out / "model.safetensors"), "--eps", "0.1",
                  "--attack", "pgd+apgd", "--steps", "5", "--samples", "100",
                  "--json", str(tmp_path / "eval.json"))
    assert "worst case" in stdout
    res = json.loads((tmp_path / "eval.json").read_text())
    assert res["n"] == 100 and 0 <= res["worst_case"] <= res["clean"] <= 1


def test_eval_rejects_corrupt_weights(tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"garbage")
    res = subprocess.run([sys.executable, "-m", "robustops", "eval", "--dataset", "digits",
                          "--weights", str(bad)], capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and "corrupt" in res.stderr


def test_quickstart_rejects_unknown_family(tmp_path):
    res = subprocess.run([sys.executable, "-m", "robustops", "quickstart", "--family", "partz",
                          "--out", str(tmp_path / "qs")], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 2 and "unknown family partz" in res.stderr and "parts" in res.stderr


@pytest.mark.parametrize("command", ["shape-study", "v1-study", "tenet-study", "part-study",
                                     "attribution-study"])
def test_study_commands_pass_their_options_and_print_the_summary(command, monkeypatch, capsys):
    import importlib

    from robustops import cli, quickstart

    family = cli.STUDIES[command][0]
    fam = quickstart.FAMILIES[family]
    study = importlib.import_module(f"robustops.studies.{fam.module}")
    seen = {}

    def fake_run(out, **kw):
        seen.update(kw, out=out)
        row = {}
        for _, key in fam.columns:  # a result with every summary key, nested ones too
            d = row
            parts = key.split(".")
            for p in parts[:-1]:
                d = d.setdefault(p, {})
            d[parts[-1]] = 0.5
        return {"model_a": row}

    monkeypatch.setattr(study, "run", fake_run)
    assert cli.main([command, "--out", "somewhere", "--seed", "3", "--epochs", "7"]) == 0
    assert seen["out"] == "somewhere" and seen["seed"] == 3 and seen["epochs"] == 7
    assert seen["device"] is None
    printed = capsys.readouterr().out
    assert "model_a" in printed and "somewhere/report.md" in printed
    for label, _ in fam.columns:
        assert label in printed
