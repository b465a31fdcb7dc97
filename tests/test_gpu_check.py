"""`robustops gpu-check`: its stages, their orchestration (pass, fail, timeout, skip) and
exit codes. The whole CPU form runs in CI (.ci/run), not here: these tests run fake
stages, and the real install stage."""
import importlib
import sys

import pytest
import torch

from robustops import gpu_check
from robustops.cli import main


def _argv(stages, name):
    return next(s for s in stages if s.name == name).argv


def test_cpu_plan_runs_the_cuda_tests_bench_and_tiny_quickstart_on_cpu(tmp_path):
    stages = gpu_check.plan(torch.device("cpu"), tmp_path)
    assert [s.name for s in stages] == list(gpu_check.STAGES)
    tests = _argv(stages, "tests")
    assert tests[1:5] == ["-m", "pytest", "-m", "cuda"] and tests[5].endswith("tests")
    bench = _argv(stages, "bench")
    assert bench[bench.index("--device") + 1] == "cpu" and "--quick" in bench
    assert bench[bench.index("--json") + 1] == str(tmp_path / "bench.json")
    quick = _argv(stages, "quickstart")
    assert quick[quick.index("--size") + 1] == "tiny" and quick[quick.index("--device") + 1] == "cpu"
    # The CPU form leaves the Triton interpreter to tests/conftest.py, and all-skipped is fine.
    assert all(s.env == {} and not s.need_passed for s in stages)


def test_cuda_plan_turns_the_interpreter_off_and_needs_a_passed_test(tmp_path):
    stages = gpu_check.plan(torch.device("cuda"), tmp_path)
    assert all(s.env == {"TRITON_INTERPRET": None} for s in stages)
    assert [s.name for s in stages if s.need_passed] == ["tests"]
    bench = _argv(stages, "bench")
    sections = [bench[i + 1] for i, a in enumerate(bench) if a == "--only"]
    assert sections == list(gpu_check.CUDA_BENCH_SECTIONS)
    for name in sections:  # each section it asks for has CUDA cases
        assert "cuda" in importlib.import_module(f"robustops.bench.{name}").DEVICES


def test_plan_only_and_unknown_stages(tmp_path):
    assert [s.name for s in gpu_check.plan(torch.device("cpu"), tmp_path, only=["bench"])] == ["bench"]
    with pytest.raises(ValueError, match="unknown stage warp"):
        gpu_check.plan(torch.device("cpu"), tmp_path, only=["warp"])


def _stage(name, code, **kw):
    return gpu_check.Stage(name, [sys.executable, "-c", code], kw.pop("timeout", 60), **kw)


def test_passing_failing_timed_out_and_skipped_stages(tmp_path):
    lines = []
    stages = [_stage("ok", "print('all good')"),
              _stage("broken", "import sys; print('it broke'); sys.exit(3)"),
              _stage("slow", "import time; time.sleep(60)", timeout=1),
              gpu_check.Stage("absent", ["false"], 60, skip_reason="nothing to run here")]
    code = gpu_check.run("cpu", out=str(tmp_path / "out"), stages=stages,
                         echo=lambda *a, **k: lines.append(" ".join(map(str, a))))
    assert code == 1
    text = "\n".join(lines)
    assert "PASS in" in text and "all good" in text
    assert "FAIL in" in text and "exit 3: it broke" in text
    assert "timed out after 1 s" in text
    assert "SKIP" in text and "nothing to run here" in text
    assert text.rstrip().splitlines()[-1].startswith("gpu-check (cpu): FAIL (broken, slow)")
    assert (tmp_path / "out" / "broken.log").read_text().splitlines()[-1] == "it broke"


def test_all_passing_stages_exit_zero(tmp_path, capsys):
    stages = [_stage("one", "pass"), gpu_check.Stage("two", ["true"], 60, skip_reason="n/a")]
    assert gpu_check.run("cpu", out=str(tmp_path), stages=stages) == 0
    assert capsys.readouterr().out.rstrip().splitlines()[-1].startswith("gpu-check (cpu): PASS")


@pytest.mark.parametrize("summary,status", [("3 skipped in 0.1s", "FAIL"),
                                            ("2 passed, 1 skipped in 0.3s", "PASS")])
def test_the_gpu_tests_stage_fails_when_every_test_skipped(tmp_path, summary, status):
    stage = _stage("tests", f"print('=== {summary} ===')", need_passed=True)
    result = gpu_check.run_stage(stage, tmp_path)
    assert result.status == status
    assert summary in result.detail


def test_stage_environment_changes_reach_the_process(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setenv("GPU_CHECK_PROBE", "kept")
    code = ("import os; print(os.environ.get('TRITON_INTERPRET', 'unset'), "
            "os.environ['GPU_CHECK_PROBE'], os.environ['ADDED'])")
    result = gpu_check.run_stage(_stage("env", code, env={"TRITON_INTERPRET": None,
                                                         "ADDED": "yes"}), tmp_path)
    assert result.status == "PASS" and result.detail == "unset kept yes"


def test_install_stage_passes_on_cpu(tmp_path, capsys):
    assert main(["gpu-check", "--device", "cpu", "--only", "install", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "install  PASS" in out and "robustops backends:" in out


def test_out_folder_must_be_new_or_empty(tmp_path, capsys):
    (tmp_path / "old.log").write_text("x")
    assert main(["gpu-check", "--device", "cpu", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "not an empty folder" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without a GPU")
def test_gpu_check_without_a_gpu_is_a_one_line_error(capsys):
    assert main(["gpu-check"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no CUDA GPU; use --device cpu" in err
