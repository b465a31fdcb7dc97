"""Shared test setup: Triton's interpreter for CPU tensors, markers, backends."""
import os

import torch  # importing torch does not import triton (checked in test_backend.py)

# Only without a GPU, and before anything imports triton: the interpreter makes Triton
# kernels run on CPU tensors (numpy), which is how they are tested on CPU machines. On a
# GPU machine the Triton kernels are compiled and the cuda-marked Triton tests run.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
from torch import nn  # noqa: E402


from robustops import backend  # noqa: E402
from robustops.testing import skip_cuda_tests_without_gpu  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU (skipped without one)")
    config.addinivalue_line("markers", "slow: long test; deselect with -m 'not slow'")


def pytest_collection_modifyitems(config, items):
    # as tests/conftest.py and benchmarks/conftest.py
    skip_cuda_tests_without_gpu(items, pytest.mark.skip(reason="needs a CUDA GPU"))


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



@pytest.fixture(params=["cuda", "triton"])
def be(request):
    """Each GPU backend (for `cuda`-marked tests): skipped when not built or when Triton runs
    interpreted (then it would take CPU tensors, not the GPU ones these tests compare)."""
    if request.param == "triton" and backend.triton_interpreted():
        pytest.skip("Triton runs interpreted in this session")
    if request.param not in backend.available():
        pytest.skip(f"{request.param} backend not available")
    return request.param

# ----------------------------------------------------------------------------- shared models


def _digits_mlp():
    from robustops.data import load_sklearn_digits

    train = load_sklearn_digits("train", seed=0)
    test = load_sklearn_digits("test", seed=0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = train.tensors
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    xt, yt = test.tensors
    with torch.no_grad():
        acc = (model(xt).argmax(1) == yt).float().mean().item()
    assert acc > 0.9, acc
    return model, xt, yt


@pytest.fixture(scope="session")
def digits_model():
    """(model, x_test (N,1,8,8) in [0,1], y_test) with > 90% clean accuracy."""
    pytest.importorskip("sklearn")
    return _digits_mlp()


@pytest.fixture(scope="module")
def digits():
    """sklearn's digits training split: (x (1, 8, 8) in [0, 1], y) samples (Trainer tests)."""
    pytest.importorskip("sklearn")
    from robustops.data import load_sklearn_digits
    return load_sklearn_digits("train", seed=0)
