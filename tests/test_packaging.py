"""What `pip install` sees: declared dependencies, the Python floor, setup.py's build
decisions and messages, and the check that the extension matches the installed torch."""
import ast
import importlib.util
import os
import pathlib
import subprocess
import sys
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "robustops"

# Import name -> distribution name, where they differ.
DISTRIBUTIONS = {"PIL": "pillow", "sklearn": "scikit-learn", "skimage": "scikit-image",
                 "cv2": "opencv-python"}


@pytest.fixture(scope="module")
def setup_py():
    """setup.py as a module: its functions and declarations, without building (the build
    runs only when it is __main__)."""
    spec = importlib.util.spec_from_file_location("robustops_setup_py", ROOT / "setup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _requirement_names(requirements):
    names = set()
    for r in requirements:
        name = r.split(";")[0]
        for sep in "=<>!~[ ":
            name = name.split(sep)[0]
        names.add(name.strip().lower())
    return names


def _third_party_imports(files):
    """{top-level import name: [files]} of the imports outside the standard library."""
    found = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "robustops":
                    found.setdefault(top, []).append(str(path.relative_to(ROOT)))
    return found


def _sources(under=PACKAGE):
    return sorted(p for p in under.rglob("*.py") if p.name != "_build_meta.py")


# Code whose imports an extra may declare instead of install_requires: path prefix -> extra.
OPTIONAL_CODE = {"robustops/triton/": "triton", "robustops/bench/": "test",
                 "robustops/data/part_imagenet.py": "partimagenet"}


def test_every_import_of_the_library_is_declared(setup_py):
    """Core code needs install_requires (torch comes from main(), pinned at build time);
    the code of OPTIONAL_CODE its extra (robustops/bench races against the test peers)."""
    core = set(_requirement_names(setup_py.INSTALL_REQUIRES)) | {"torch"}
    undeclared = []
    for name, files in _third_party_imports(_sources()).items():
        dist = DISTRIBUTIONS.get(name, name).lower()
        if dist in core:
            continue
        extras = {extra for f in files for prefix, extra in OPTIONAL_CODE.items()
                  if f.startswith(prefix)}
        optional = all(any(f.startswith(p) for p in OPTIONAL_CODE) for f in files)
        if not (optional and all(dist in _requirement_names(setup_py.EXTRAS_REQUIRE[e])
                                 for e in extras)):
            undeclared.append(f"{name} ({dist}) imported by {', '.join(files[:3])}")
    assert not undeclared, undeclared
    assert "torchvision" in core and "triton" not in core
    assert _requirement_names(setup_py.EXTRAS_REQUIRE["triton"]) == {"triton"}


def test_python_floor_is_true(setup_py):
    """python_requires allows 3.10: the sources parse as 3.10 code and TOML is read with
    tomli where tomllib is missing."""
    assert setup_py.METADATA["python_requires"] == ">=3.10"
    assert "tomli; python_version < '3.11'" in setup_py.INSTALL_REQUIRES
    for path in _sources() + [ROOT / "setup.py"]:
        ast.parse(path.read_text(encoding="utf-8"), str(path), feature_version=(3, 10))


def test_config_reads_toml_with_tomli_without_tomllib(monkeypatch):
    """Python 3.10's path: config.py imported with tomllib missing loads a shipped config."""
    tomli = pytest.importorskip("tomli")  # in the `test` extra
    monkeypatch.setitem(sys.modules, "tomllib", None)  # `import tomllib` fails
    # A second copy of config.py under another name, so robustops.config (and its
    # ConfigError, which other modules hold) stays the one the other tests use.
    spec = importlib.util.spec_from_file_location("robustops._config_without_tomllib",
                                                  PACKAGE / "config.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look the module up
    spec.loader.exec_module(module)
    assert module.tomllib is tomli
    cfg = module.load("digits_pgd_at_small_cnn", [("optim", "lr", "0.01", "--lr")])
    assert cfg["optim"]["lr"] == 0.01 and cfg["data"]["dataset"] == "digits"
    bad = PACKAGE.parent / "pyproject.toml"  # valid TOML, not a config: refused by schema
    with pytest.raises(module.ConfigError):
        module.load(str(bad), [])


def test_build_backend_does_not_pull_its_own_torch():
    """pyproject's build requirements leave torch out on purpose: an isolated build would
    compile against a fresh torch, not the one that loads the extension."""
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]
    assert "torch" not in _requirement_names(build["requires"])


def test_without_torch_the_build_says_to_install_it_and_skip_isolation():
    """What pip's isolated build (no torch inside) shows: the one thing to do."""
    code = ("import runpy, sys; sys.modules['torch'] = None; "
            "sys.argv = ['setup.py', '--version']; runpy.run_path('setup.py', run_name='__main__')")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode != 0
    assert "Traceback" not in res.stderr, res.stderr
    assert "Install torch first" in res.stderr
    assert "pip install --no-build-isolation ." in res.stderr


@pytest.mark.parametrize("mode, torch_cuda, nvcc, gpu, expected", [
    ("auto", "12.6", "/cuda/bin/nvcc", False, True),   # a login node: nvcc, CUDA torch, no GPU
    ("auto", "12.6", "/cuda/bin/nvcc", True, True),
    ("auto", None, "/cuda/bin/nvcc", True, False),     # CPU-only torch
    ("auto", "12.6", None, True, False),               # no nvcc
    ("0", "12.6", "/cuda/bin/nvcc", True, False),      # ROBUSTOPS_CUDA=0 still skips
    ("1", "12.6", "/cuda/bin/nvcc", False, True),
    (" AUTO ", "12.6", "/cuda/bin/nvcc", False, True),
])
def test_cuda_is_built_when_nvcc_and_cuda_torch_are_found(setup_py, mode, torch_cuda, nvcc,
                                                          gpu, expected):
    build, reason = setup_py.decide_cuda(mode, torch_cuda, nvcc, gpu)
    assert build is expected and reason
    if build:
        assert nvcc in reason and torch_cuda in reason


@pytest.mark.parametrize("mode, torch_cuda, nvcc, message", [
    ("1", None, "/cuda/bin/nvcc", "CPU-only build"),
    ("1", "12.6", None, "nvcc was not found"),
    ("yes", "12.6", "/cuda/bin/nvcc", "must be auto, 0 or 1"),
])
def test_forced_or_bad_cuda_modes_fail_with_a_reason(setup_py, mode, torch_cuda, nvcc, message):
    with pytest.raises(SystemExit, match=message):
        setup_py.decide_cuda(mode, torch_cuda, nvcc, False)


def test_nvcc_is_found_through_cuda_home(setup_py, tmp_path):
    nvcc = tmp_path / "bin" / "nvcc"
    nvcc.parent.mkdir()
    nvcc.write_text("")
    nowhere = str(tmp_path / "none" / "nvcc")
    assert setup_py.find_nvcc({"CUDA_HOME": str(tmp_path)}, which=lambda _: None,
                              default=nowhere) == str(nvcc)
    # A toolkit's own nvcc comes before a wrapper on PATH (its folder has no CUDA headers).
    wrapper = tmp_path / "wrapper" / "nvcc"
    wrapper.parent.mkdir()
    wrapper.write_text("#!/bin/sh\n")
    assert setup_py.find_nvcc({}, which=lambda _: str(wrapper), default=str(nvcc)) == str(nvcc)
    assert setup_py.find_nvcc({}, which=lambda _: str(wrapper), default=nowhere) == str(wrapper)
    assert setup_py.find_nvcc({}, which=lambda _: None, default=nowhere) is None


def test_release_builds_are_stripped_unless_debugging(setup_py):
    assert setup_py.release_flags({}) == (["-g0"], ["-s"])
    assert setup_py.release_flags({"ROBUSTOPS_DEBUG": "0"}) == (["-g0"], ["-s"])
    assert setup_py.release_flags({"ROBUSTOPS_DEBUG": "1"}) == (["-g"], [])


def test_torch_is_pinned_to_the_release_built_against(setup_py):
    assert setup_py.torch_requirement("2.14.1+cu130") == "torch==2.14.1"
    assert setup_py.torch_requirement("2.15.0") == "torch==2.15.0"


def test_build_meta_records_the_torch_it_was_built_against(setup_py):
    namespace = {}
    exec(setup_py.build_meta_source("2.14.1+cu130", "13.0", True), namespace)
    assert (namespace["TORCH_VERSION"], namespace["TORCH_CUDA"], namespace["CUDA_BUILT"]) == (
        "2.14.1+cu130", "13.0", True)


def test_versions_agree(setup_py):
    import robustops

    assert setup_py.METADATA["version"] == robustops.__version__


def test_torch_mismatch_names_both_versions():
    from robustops.extension_check import torch_mismatch

    assert torch_mismatch("2.14.1+cpu", "2.14.1+cpu") is None
    assert torch_mismatch(None, "2.14.1") is None  # a build without _build_meta.py
    text = torch_mismatch("2.14.1+cu126", "2.14.1+cu128")
    assert "2.14.1+cu126" in text and "2.14.1+cu128" in text


def test_an_extension_built_for_another_torch_is_not_loaded_and_says_how_to_rebuild():
    code = (
        "import sys, types, warnings\n"
        "sys.modules['robustops._build_meta'] = types.SimpleNamespace(TORCH_VERSION='0.0.1')\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    import robustops, torch\n"
        "    assert robustops.backend.available() == ['reference'], robustops.backend.available()\n"
        "msgs = [str(m.message) for m in w if 'could not be loaded' in str(m.message)]\n"
        "assert len(msgs) == 1, msgs\n"
        "assert 'built against torch 0.0.1 but torch ' + torch.__version__ in msgs[0], msgs[0]\n"
        "assert 'pip install --no-build-isolation' in msgs[0], msgs[0]\n"
        "print('OK')\n")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env=env, timeout=300)
    assert res.returncode == 0 and "OK" in res.stdout, res.stdout + res.stderr
