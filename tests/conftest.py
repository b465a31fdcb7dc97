"""Shared test setup: Triton's interpreter for CPU tensors, markers, backends."""
import os

# Must be set before anything imports triton: it makes Triton kernels run on
# CPU tensors (numpy interpreter), which is how they are tested without a GPU.
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

import robustops  # noqa: E402
from robustops import backend  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU (skipped without one)")
    config.addinivalue_line("markers", "slow: long test; deselect with -m 'not slow'")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def cpu_kernel_backends():
    """Non-reference backends that run CPU tensors here (cpp; triton under the interpreter)."""
    return [b for b in ("cpp", "triton") if b in backend.available()]


@pytest.fixture(params=["cpp", "triton"])
def kernel_backend(request):
    """Each kernel backend that can run CPU tensors here, selected for the test's duration."""
    if request.param not in backend.available():
        pytest.skip(f"backend {request.param} not available here")
    with backend.use(request.param):
        yield request.param
