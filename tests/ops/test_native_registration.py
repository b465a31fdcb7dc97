"""Every robustops op is a dispatcher-native op (issue 14): schema declared in C++,
kernels registered per dispatch key from csrc/, the fake kernel from Python, no Python
kernel on a device or autograd key, and no device switch left in Python."""
import pathlib
import re

import pytest
import torch

import robustops  # noqa: F401  (loads the op library)
from robustops import backend

ROOT = pathlib.Path(__file__).resolve().parents[2]

# Public function -> its C++ ops. cuda: a hand-written CUDA kernel exists (csrc/cuda/<op>.cu);
# autograd: the op has a C++ autograd kernel.
NATIVE = {
    "pgd_step": dict(cuda=True, autograd=True),
    "pgd_step_": dict(cuda=True, autograd=True),
    "pgd_step_backward": dict(cuda=False, autograd=False),
    "v1_response": dict(cuda=True, autograd=True),
    "gabor_bank": dict(cuda=True, autograd=True),
    "counter_rng": dict(cuda=True, autograd=False),
    "channel_kmeans": dict(cuda=False, autograd=False),
    "group_inhibition_mask": dict(cuda=True, autograd=False),
    "group_orthogonality_loss": dict(cuda=True, autograd=True),
    "ig_accumulate": dict(cuda=True, autograd=True),
    "pixel_softmax_kl": dict(cuda=True, autograd=True),
    "sign_matched_product": dict(cuda=True, autograd=True),
    "rank_metrics": dict(cuda=False, autograd=False),
    "box_hyperplane_step": dict(cuda=False, autograd=False),
    "part_moments": dict(cuda=True, autograd=True),
}

pytestmark = pytest.mark.skipif(not backend.native_ops_loaded(),
                                reason="the op library robustops/_ops was not built")


def _dump(name: str) -> str:
    return torch._C._dispatch_dump(f"robustops::{name}")


def _registered_at(dump: str, key: str) -> str:
    """The file that registered `key`'s kernel ('' when none)."""
    m = re.search(rf"^{re.escape(key)}: registered at (\S+?):\d+", dump, re.M)
    return m.group(1) if m else ""


@pytest.mark.parametrize("name", sorted(NATIVE))
def test_op_is_declared_and_registered_in_cpp(name):
    spec = NATIVE[name]
    dump = _dump(name)
    assert dump, f"torch.ops.robustops.{name} does not exist"
    defined = re.search(r"^debug: registered at (\S+?):\d+", dump, re.M).group(1)
    assert "/csrc/ops/" in defined, f"{name}: schema declared in {defined}, not in csrc/ops"
    cpu = _registered_at(dump, "CPU") or _registered_at(dump, "CompositeExplicitAutograd[alias]")
    assert "/csrc/" in cpu, f"{name}: CPU kernel from {cpu or 'nowhere'}"
    cuda = _registered_at(dump, "CUDA")
    if spec["cuda"] and "cuda" in backend.compiled():
        assert "/csrc/cuda/" in cuda, f"{name}: CUDA kernel from {cuda or 'nowhere'}"
    if not spec["cuda"]:
        # No hand-written CUDA kernel: no CUDA registration that would run a composition.
        assert not cuda or "/csrc/ops/" in cpu, f"{name}: unexpected CUDA kernel from {cuda}"
    autograd = _registered_at(dump, "Autograd[alias]")
    if spec["autograd"]:
        assert "/csrc/ops/" in autograd, f"{name}: autograd kernel from {autograd or 'nowhere'}"
    for key in ("CPU", "CUDA", "Autograd[alias]"):
        assert "torch/library.py" not in _registered_at(dump, key), f"{name}: Python {key} kernel"
        assert "_library" not in _registered_at(dump, key), f"{name}: Python {key} kernel"


@pytest.mark.parametrize("name", sorted(n for n in NATIVE if not n.endswith("_backward")))
def test_fake_kernel_registered(name):
    # torch.compile / torch.export need shapes without running a kernel.
    assert torch._C._dispatch_has_kernel_for_dispatch_key(f"robustops::{name}", "Meta"), name


def test_every_robustops_op_is_native_or_a_named_triton_variant():
    names = [n.split("::", 1)[1] for n in torch._C._dispatch_get_all_op_names()
             if n.startswith("robustops::")]
    for name in names:
        if name.endswith(("_triton", "_triton_", "_reference")) or "_triton_" in name:
            continue  # the Triton / reference backends' Python ops (robustops/ops/<op>.py)
        defined = re.search(r"^debug: registered at (\S+?):\d+", _dump(name), re.M).group(1)
        assert "/csrc/ops/" in defined, f"robustops::{name} is declared in {defined}"


def test_no_python_device_switch_or_pybind_kernel_calls():
    """One call path: no op module calls pybind kernel entries or skips the dispatcher."""
    offenders = []
    for path in sorted((ROOT / "robustops").rglob("*.py")):
        text = path.read_text()
        for pattern in ("backend.extension()", "_direct_call_ok", "_fast_inplace",
                        "getrefcount", "_storage_Use_Count", ".default._op"):
            if pattern in text:
                offenders.append(f"{path.relative_to(ROOT)}: {pattern}")
    assert not offenders, offenders


def test_pybind_module_holds_only_build_info():
    ext = backend.extension()
    public = sorted(n for n in dir(ext) if not n.startswith("_"))
    assert public == ["build_info"], public
