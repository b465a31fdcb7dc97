"""`robustops bench --device`: synchronised timing, median and IQR, run metadata, the load
warning, and a clear error for --device cuda without a GPU."""
import datetime
import json
import os
import re
import time

import pytest
import torch

from robustops.bench import timing
from robustops.cli import main


def test_summarize_gives_median_and_quartiles():
    t = timing.summarize([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (t.median, t.q1, t.q3, t.samples) == (3.0, 2.0, 4.0, 5)
    assert t.iqr == 2.0
    assert t.as_dict("fused_", scale=1e6, unit="us") == {"fused_us": 3e6, "fused_iqr_us": 2e6}
    one = timing.summarize([0.5])
    assert (one.median, one.iqr, one.samples) == (0.5, 0.0, 1)
    with pytest.raises(ValueError, match="at least one"):
        timing.summarize([])


def test_interleaved_timings_time_every_case_with_spread():
    calls = {"sleep": 0, "noop": 0}

    def sleep():
        calls["sleep"] += 1
        time.sleep(0.002)

    def noop():
        calls["noop"] += 1

    t = timing.interleaved_timings({"sleep": sleep, "noop": noop}, repeats=7, inner=2, warmup=3)
    assert calls == {"sleep": 3 + 7 * 2, "noop": 3 + 7 * 2}
    assert t["sleep"].samples == t["noop"].samples == 7
    assert t["sleep"].median >= 0.002 > t["noop"].median
    for v in t.values():
        assert v.q1 <= v.median <= v.q3 and v.iqr >= 0
    medians = timing.interleaved_medians({"noop": noop}, repeats=3, inner=1, warmup=0)
    assert set(medians) == {"noop"} and medians["noop"] >= 0


def test_run_metadata_fields_are_present_and_sane():
    meta = timing.run_metadata("cpu")
    assert meta["device"] == "cpu" and meta["device_name"]
    assert meta["torch"] == torch.__version__ and meta["cuda"] == torch.version.cuda
    assert meta["threads"] == torch.get_num_threads() >= 1
    assert 1 <= meta["cores"] <= (os.cpu_count() or 1)
    assert meta["load_average"] is None or meta["load_average"] >= 0
    assert meta["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", meta["git_commit"])
    assert "cpp" in meta["backends"] or "reference" in meta["backends"]
    assert datetime.datetime.fromisoformat(meta["time_utc"]).tzinfo is not None


def test_load_warning_only_when_the_load_exceeds_the_cores(monkeypatch):
    cores = timing.usable_cores()
    monkeypatch.setattr(os, "getloadavg", lambda: (cores + 3.0, 0.0, 0.0))
    assert timing.load_average() == cores + 3.0
    warning = timing.load_warning(timing.load_average())
    assert warning.startswith("WARNING: load average") and f"{cores} cores" in warning
    assert timing.load_warning(cores - 0.5, cores) is None
    assert timing.load_warning(None, cores) is None

    def no_loadavg():
        raise OSError("no load average here")

    monkeypatch.setattr(os, "getloadavg", no_loadavg)
    assert timing.load_average() is None


def test_bench_prints_the_load_warning_and_writes_metadata(tmp_path, capsys, monkeypatch):
    cores = timing.usable_cores()
    monkeypatch.setattr(os, "getloadavg", lambda: (cores + 5.0, 0.0, 0.0))
    out = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--only", "pgd_step", "--repeats", "2", "--threads", "1",
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.count(f"WARNING: load average {cores + 5.0:.1f} exceeds") == 2  # before, after
    assert "fused us (IQR)" in text
    data = json.loads(out.read_text())
    meta = data["metadata"]
    assert data["device"] == meta["device"] == "cpu"
    assert meta["load_average_before"] == meta["load_average_after"] == cores + 5.0
    assert meta["threads"] == data["threads"] == 1
    rec = data["results"][0]
    assert rec["op"] == "pgd_step" and rec["device"] == "cpu"
    assert rec["fused_us"] > 0 and rec["fused_iqr_us"] >= 0 and rec["eager_iqr_us"] >= 0


# ids without the word "cuda": conftest skips any test whose keywords include it.
@pytest.mark.parametrize("name", ["cuda", "cuda:0"], ids=["default_gpu", "gpu_0"])
def test_bench_device_without_a_gpu_is_a_clear_error(monkeypatch, name):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="sees no CUDA GPU; use --device cpu"):
        timing.bench_device(name)
    assert timing.bench_device(None) == timing.bench_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="not a device name"):
        timing.bench_device("gpu0")
    with pytest.raises(ValueError, match="runs on cpu or cuda"):
        timing.bench_device("meta")
    with pytest.raises(TypeError, match="str or torch.device"):
        timing.bench_device(0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without a GPU")
def test_cli_bench_device_cuda_without_a_gpu_fails_in_one_line(capsys):
    assert main(["bench", "--device", "cuda", "--quick"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("robustops bench: error: --device:")
    assert "no CUDA GPU" in err


# ----------------------------------------------------------------------------- on a GPU


@pytest.mark.cuda
def test_cuda_timing_waits_for_the_kernels():
    # torch.cuda._sleep spins the GPU for a number of cycles: an unsynchronised clock
    # would time its launch (microseconds), the events time the spin (milliseconds).
    cycles = 20_000_000  # ~10 ms at 2 GHz
    t = timing.interleaved_timings({"spin": lambda: torch.cuda._sleep(cycles)}, repeats=5,
                                   inner=1, warmup=1, device="cuda")
    assert t["spin"].median > 2e-3


@pytest.mark.cuda
def test_cli_bench_on_cuda_writes_cuda_records(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--device", "cuda", "--quick", "--repeats", "3", "--only", "pgd_step",
                 "--only", "part_moments", "--only", "tenet", "--json", str(out)]) == 0
    assert "not run on cuda (CPU-only comparisons): tenet" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["metadata"]["device_name"] == torch.cuda.get_device_name()
    assert data["skipped_sections"] == ["tenet"]
    pgd = [r for r in data["results"] if r.get("op") == "pgd_step"]
    assert pgd and all(r["device"].startswith("cuda") and r["fused_us"] > 0 for r in pgd)
    assert {r["backend"] for r in pgd} <= {"cuda", "triton", "auto"}
