"""Whether the compiled extension was built against the torch installed now.

setup.py writes robustops/_build_meta.py (TORCH_VERSION, TORCH_CUDA, CUDA_BUILT) beside the
extension when it builds it. A C++ extension works only with the torch release it was
compiled against (libtorch's ABI changes between releases): loading it into another torch
ends in an undefined symbol at best, so robustops.backend asks torch_mismatch() first and
falls back to the reference backend with a message that says how to rebuild.
"""
from __future__ import annotations

import importlib
from typing import Optional

# How to rebuild, for every message that says the extension cannot be used.
REBUILD = ("rebuild it against the installed torch: from the robustops checkout run "
           "`pip install --no-build-isolation -e .` (editable; without -e for a regular "
           "install)")


def built_torch_version() -> Optional[str]:
    """torch.__version__ at build time (e.g. '2.14.1+cu126'), or None for a build older than
    robustops/_build_meta.py (or a tree where it was deleted)."""
    try:
        meta = importlib.import_module("robustops._build_meta")
    except ImportError:
        return None
    return getattr(meta, "TORCH_VERSION", None)


def torch_mismatch(built: Optional[str], installed: str) -> Optional[str]:
    """Why an extension built against torch `built` cannot be loaded into torch `installed`
    (both torch.__version__ strings, local labels such as +cpu or +cu126 included: a CUDA
    build links libtorch_cuda of that CUDA release); None when they match or `built` is
    unknown (None: nothing to compare, the load itself decides).

    >>> torch_mismatch("2.14.1", "2.15.0")
    'it was built against torch 2.14.1 but torch 2.15.0 is installed'
    """
    if built is None or built == installed:
        return None
    return f"it was built against torch {built} but torch {installed} is installed"
