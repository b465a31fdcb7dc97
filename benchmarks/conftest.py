"""Shared set-up of the pytest-benchmark files: the `cuda` marker skips without a GPU (as
in tests/), the (device, backend) cases of the op benchmarks, CUDA-synchronised timing,
and throughput (bytes, GB/s, dispatched ops) in pytest-benchmark's extra_info."""
import pytest
import torch

from robustops import backend
from robustops.bench.timing import count_dispatched
from robustops.testing import skip_cuda_tests_without_gpu  # noqa: E402

# The op benchmarks' cases: CPU through the auto backend (the C++ kernels); on a GPU the op
# library's CUDA kernels and the Triton kernels, one case each (skipped without a GPU).
DEVICE_BACKENDS = [pytest.param(("cpu", "auto"), id="cpu"),
                   pytest.param(("cuda", "cuda"), id="cuda", marks=pytest.mark.cuda),
                   pytest.param(("cuda", "triton"), id="cuda-triton", marks=pytest.mark.cuda)]


def pytest_collection_modifyitems(config, items):
    # as tests/conftest.py and benchmarks/conftest.py
    skip_cuda_tests_without_gpu(items, pytest.mark.skip(reason="needs a CUDA GPU"))


@pytest.fixture(params=DEVICE_BACKENDS)
def device_backend(request):
    """(device, backend name) with the backend selected for the test's duration."""
    device, name = request.param
    if name == "triton" and backend.triton_interpreted():
        pytest.skip("Triton runs interpreted in this session")
    if name != "auto" and name not in backend.available():
        pytest.skip(f"{name} backend not available")
    with backend.use(name):
        yield device, name


@pytest.fixture
def baseline_once(device_backend):
    """baseline_once(): skip a baseline row (eager, copy_) on the second GPU backend; it does
    not depend on the backend, the `cuda` case already times it."""
    def check():
        if device_backend[1] == "triton":
            pytest.skip("baseline rows do not depend on the backend: see the cuda case")
    return check


@pytest.fixture
def synced():
    """synced(fn, device): fn followed by a CUDA synchronize on a GPU (pytest-benchmark
    reads a host clock: without it a case would time its kernel launches only)."""
    def wrap(fn, device):
        if torch.device(device).type != "cuda":
            return fn

        def run(*args, **kwargs):
            out = fn(*args, **kwargs)
            torch.cuda.synchronize()
            return out
        return run
    return wrap


@pytest.fixture
def throughput(benchmark):
    """throughput(call, nbytes=None): extra_info gets the dispatched-op count of one call and,
    with nbytes (the bytes the call must read + write), bytes and GB/s at the median."""
    def record(call, nbytes=None):
        benchmark.extra_info["dispatched_ops"] = count_dispatched(call).total
        if nbytes is None:
            return
        benchmark.extra_info["bytes"] = int(nbytes)
        stats = getattr(benchmark, "stats", None)  # None under --benchmark-disable
        median = stats.stats.median if stats is not None else None
        benchmark.extra_info["gbs"] = nbytes / median / 1e9 if median else None
    return record
