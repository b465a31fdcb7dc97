"""Shared set-up of the pytest-benchmark files: the `cuda` marker skips without a GPU (as
in tests/), the (device, backend) cases of the op benchmarks, CUDA-synchronised timing,
throughput (bytes, GB/s, dispatched ops) in pytest-benchmark's extra_info, and the check
of a timed result against the reference it races (tests/test_benchmarks_check_results.py
makes every benchmark check its result)."""
import numpy as np
import pytest
import torch

from robustops import backend
from robustops.bench.timing import count_dispatched
from robustops.testing import assert_close, skip_cuda_tests_without_gpu, tolerance  # noqa: E402

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


def _leaves(result, where="result"):
    """[(place, tensor)] of a result: a tensor, a numpy array, a number, or a (named)
    tuple, list or dict of them (dicts by sorted key)."""
    if isinstance(result, torch.Tensor):
        return [(where, result.detach().cpu())]
    if isinstance(result, (np.ndarray, np.generic, float, int)):
        return [(where, torch.as_tensor(np.asarray(result)))]
    if isinstance(result, dict):
        return [leaf for k in sorted(result) for leaf in _leaves(result[k], f"{where}[{k!r}]")]
    if isinstance(result, (list, tuple)):
        return [leaf for i, item in enumerate(result) for leaf in _leaves(item, f"{where}[{i}]")]
    raise TypeError(f"{where}: cannot compare a {type(result).__name__}")


@pytest.fixture
def assert_matches_reference():
    """assert_matches_reference(actual, expected, what, scaled=False): the timed
    implementation's result equals the reference's, leaf by leaf (same structure and
    shapes), within robustops.testing's tolerance for the less precise of the two
    dtypes; integer leaves exactly. scaled=True: atol = rtol * max|expected| (results summed by
    convolutions of other shapes, whose rounding grows with the values)."""
    def check(actual, expected, what, scaled=False):
        got, want = _leaves(actual), _leaves(expected)
        assert [(p, tuple(t.shape)) for p, t in got] == [(p, tuple(t.shape)) for p, t in want], \
            f"{what}: the result's structure differs from the reference's"
        for (place, a), (_, b) in zip(got, want):
            if not b.is_floating_point():
                assert torch.equal(a, b), f"{what}: {place} differs from the reference"
                continue
            # At the precision of the less precise side (a float32 kernel vs a float64
            # numpy reference is held to float32's tolerance).
            dtype = max((a.dtype, b.dtype), key=lambda d: torch.finfo(d).eps) \
                if a.is_floating_point() else b.dtype
            a, b = a.to(dtype), b.to(dtype)
            if scaled:
                rtol, _ = tolerance(b.dtype)
                torch.testing.assert_close(a, b, rtol=rtol, atol=rtol * float(b.abs().max()),
                                           equal_nan=True, msg=lambda m: f"{what} {place}: {m}")
            else:
                assert_close(a, b, msg=f"{what} {place}")
    return check
