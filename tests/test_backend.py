"""Backend selection, build info, and the fallback when the extension is missing."""
import os
import subprocess
import sys

import pytest
import torch

from robustops import backend, pgd_step


def test_reference_always_available():
    assert "reference" in backend.available()


def test_cpp_is_built():
    # The package is installed with its extension (setup.py always builds C++);
    # a missing extension here means the install step failed.
    assert "cpp" in backend.compiled(), backend.extension_error()
    assert "cpp" in backend.available()


def test_cuda_compiled_when_forced():
    info = backend.build_info()
    if os.environ.get("ROBUSTOPS_CUDA") == "1":
        assert "cuda" in info["compiled_backends"]
        assert info["cuda_version"] and "8.0" in info["cuda_archs"]
    for key in ("torch_version", "compiled_backends", "openmp", "openmp_max_threads", "compiler"):
        assert key in info
    # The build says why CUDA was or was not compiled (pip hides setup.py's output).
    expected = "built: " if "cuda" in info["compiled_backends"] else "skipped: "
    assert info["cuda_build"].startswith(expected), info["cuda_build"]
    assert info["torch_version"] == torch.__version__.split("+")[0]


def test_use_and_env_choose_backend(monkeypatch):
    dev = torch.device("cpu")
    assert backend.resolve(dev, "op") == "cpp"
    with backend.use("reference"):
        assert backend.resolve(dev, "op") == "reference"
        with backend.use("auto"):
            assert backend.resolve(dev, "op") == "cpp"
    monkeypatch.setenv("ROBUSTOPS_BACKEND", "reference")
    assert backend.resolve(dev, "op") == "reference"
    monkeypatch.setenv("ROBUSTOPS_BACKEND", "fast")
    with pytest.raises(ValueError, match="ROBUSTOPS_BACKEND"):
        backend.resolve(dev, "op")


def test_explicit_backend_that_cannot_run_raises():
    x = torch.rand(2, 3)
    with backend.use("cuda"), pytest.raises(RuntimeError, match="cuda"):
        pgd_step(x, x, x, 0.1, 0.01)
    with pytest.raises(ValueError, match="unknown robustops backend"):
        with backend.use("tpu"):
            pass
    with backend.use("triton"):
        assert backend.resolve(torch.device("cpu"), "op") == "triton"  # interpreter is on
    with backend.use("cpp"), pytest.raises(RuntimeError, match="has no 'cpp' backend"):
        backend.resolve(torch.device("cpu"), "other_op", supported=("reference",))


def test_missing_extension_warns_once_and_falls_back():
    code = (
        "import sys, warnings, torch\n"
        "sys.modules['robustops._C'] = None  # makes the import fail\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    import robustops  # the op modules load the extension at import\n"
        "    x = torch.rand(2, 3)\n"
        "    for _ in range(3):\n"
        "        out = robustops.pgd_step(x, x, torch.randn(2, 3), 0.1, 0.05)\n"
        "    assert robustops.backend.available() == ['reference'], robustops.backend.available()\n"
        "msgs = [str(m.message) for m in w if 'compiled ops could not be loaded' in str(m.message)]\n"
        "assert len(msgs) == 1, msgs\n"
        "assert 'pip install --no-build-isolation -e .' in msgs[0], msgs[0]\n"
        "print('OK')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120)
    assert res.returncode == 0 and "OK" in res.stdout, res.stderr


def test_cli_info_and_quick_bench(tmp_path):
    res = subprocess.run([sys.executable, "-m", "robustops", "info"], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "available backends: reference, cpp" in res.stdout
    out = tmp_path / "bench.json"
    res = subprocess.run([sys.executable, "-m", "robustops", "bench", "--quick", "--repeats", "3",
                          "--only", "pgd_step", "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "pgd_step linf (128, 3, 32, 32)" in res.stdout
    import json
    rec = json.loads(out.read_text())["results"][0]
    assert rec["ops_fused"] == 1 and rec["ops_eager"] >= 6
    assert rec["fused_us"] > 0 and rec["copy_us"] > 0


def test_bench_sections_run_through_one_loop(tmp_path):
    # Every section but pgd_step goes through the same generic loop: one is enough here.
    from robustops.cli import BENCH_SECTIONS
    import importlib

    for name in BENCH_SECTIONS:
        assert hasattr(importlib.import_module(f"robustops.bench.{name}"), "report"), name
    out = tmp_path / "parts.json"
    res = subprocess.run([sys.executable, "-m", "robustops", "bench", "--quick", "--only",
                          "part_moments", "--json", str(out)], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    assert "part_moments" in res.stdout and "pgd_step linf" not in res.stdout
    import json
    assert json.loads(out.read_text())["results"]


def test_conftest_interprets_triton_only_without_a_gpu():
    # tests/conftest.py decides before triton is imported; torch alone must not import it.
    code = "import sys, torch; assert 'triton' not in sys.modules; print('OK')"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "OK" in res.stdout, res.stderr
    if not torch.cuda.is_available():
        assert backend.triton_interpreted()
