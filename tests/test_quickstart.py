"""`robustops quickstart` end to end at smoke size: every family, report, plots, kill + resume."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from robustops import quickstart

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _quickstart(out, *families, check=True):
    args = [sys.executable, "-m", "robustops", "quickstart", "--size", "tiny", "--no-progress",
            "--device", "cpu", "--out", str(out)]
    for f in families:
        args += ["--family", f]
    return subprocess.run(args, capture_output=True, text=True, timeout=900, check=check)


def test_every_family_runs_and_the_report_has_its_tables_and_plots(tmp_path):
    pytest.importorskip("mlxtend")
    out = tmp_path / "qs"
    res = _quickstart(out)
    assert res.returncode == 0, res.stdout + res.stderr
    report = (out / "report.md").read_text()
    for name, fam in quickstart.FAMILIES.items():
        assert fam.title in report, name
        assert (out / f"{name}_summary.png").stat().st_size > 1000, name
        assert f"({name}/report.md)" in report
        assert (out / name / "report.md").exists()
        saved = json.loads((out / name / "quickstart.json").read_text())
        for model, r in saved["results"].items():
            for key in fam.plot:  # fractions (NaN allowed: nothing to measure at tiny size)
                v = quickstart._lookup(r, key)
                assert v != v or -1 <= v <= 1, (name, model, key, v)
        for label, _ in fam.columns:  # the printed summary table has every column
            assert label in res.stdout, (name, label)


def test_killed_quickstart_resumes_and_keeps_finished_families(tmp_path):
    out = tmp_path / "qs"
    args = [sys.executable, "-m", "robustops", "quickstart", "--size", "tiny", "--no-progress",
            "--device", "cpu", "--out", str(out), "--family", "adversarial,parts"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = out / "adversarial" / "quickstart.json"

    def finished(name):
        try:
            return "results" in json.loads((out / name / "quickstart.json").read_text())
        except (OSError, ValueError):
            return False

    deadline = time.time() + 600
    # Kill it once the first family is finished and the second one has started.
    while time.time() < deadline and not (finished("adversarial") and (out / "parts").exists()):
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    parts_done_at_kill = finished("parts")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert finished("adversarial") and not parts_done_at_kill
    first = marker.stat().st_mtime_ns
    res = subprocess.run(args, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    assert marker.stat().st_mtime_ns == first  # loaded, not recomputed
    assert finished("parts")
    report = (out / "report.md").read_text()
    assert quickstart.FAMILIES["parts"].title in report
    assert quickstart.FAMILIES["adversarial"].title in report


def test_changed_settings_rerun_a_family(tmp_path):
    tiny = dict(quickstart.TINY["adversarial"])
    done, _ = quickstart.run_family("adversarial", tmp_path, settings=tiny, progress=False)
    again, _ = quickstart.run_family("adversarial", tmp_path, settings=tiny, progress=False)
    assert again == json.loads(json.dumps(done))
    marker = tmp_path / "adversarial" / "quickstart.json"
    before = marker.stat().st_mtime_ns
    quickstart.run_family("adversarial", tmp_path, settings={**tiny, "corruptions": ("contrast",)},
                          progress=False)
    assert marker.stat().st_mtime_ns != before


def test_bad_family_and_missing_gpu_are_clear(tmp_path):
    with pytest.raises(ValueError, match="unknown family nope; choose from adversarial"):
        quickstart.run(tmp_path, families=["nope"])
    if not __import__("torch").cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            quickstart.run(tmp_path, families=["adversarial"], device="cuda")
    with pytest.raises(ValueError, match="not a device name"):
        quickstart.run(tmp_path, families=["adversarial"], device="gpu0")
    with pytest.raises(ValueError, match="runs on cpu or cuda"):
        quickstart.run(tmp_path, families=["adversarial"], device="meta")


def test_other_settings_move_the_old_run_aside_and_the_report_keeps_earlier_families(tmp_path):
    tiny = dict(quickstart.TINY["adversarial"])
    quickstart.run(tmp_path, families=["adversarial"], device="cpu", progress=False,
                   settings={"adversarial": tiny}, echo=lambda s: None)
    # A different size in the same folder must not resume the old checkpoints.
    quickstart.run_family("adversarial", tmp_path, settings={**tiny, "epochs": 2}, progress=False)
    aside = [p.name for p in tmp_path.iterdir() if p.name.startswith("adversarial.previous-")]
    assert len(aside) == 1
    # A later invocation for another family keeps the finished one in the combined report.
    quickstart.run(tmp_path, families=["tenet"], device="cpu", progress=False,
                   settings={"tenet": quickstart.TINY["tenet"]}, echo=lambda s: None)
    report = (tmp_path / "report.md").read_text()
    assert quickstart.FAMILIES["adversarial"].title in report
    assert quickstart.FAMILIES["tenet"].title in report
