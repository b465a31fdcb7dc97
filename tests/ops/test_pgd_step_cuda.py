"""pgd_step on a GPU: the CUDA and Triton kernels against the reference (skipped without one)."""

import pytest
import torch

from robustops import backend, pgd_step, pgd_step_, pgd_step_reference
from robustops.testing import assert_close

pytestmark = pytest.mark.cuda


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_gpu_backend_matches_reference(be, norm, dtype, layout):
    g = torch.Generator(device="cuda").manual_seed(0)
    shape = (7, 3, 33, 31)
    x_nat = torch.rand(shape, device="cuda", generator=g).to(dtype)
    x = (x_nat + 0.03 * torch.randn(shape, device="cuda", generator=g).to(dtype)).clamp(0, 1)
    grad = torch.randn(shape, device="cuda", generator=g).to(dtype)
    if layout == "channels_last":
        x, x_nat, grad = (t.contiguous(memory_format=torch.channels_last) for t in (x, x_nat, grad))
    eps = torch.linspace(0.01, 0.1, 7, device="cuda")
    ref = pgd_step_reference(x, x_nat, grad, eps, 0.02, norm)
    with backend.use(be):
        out = pgd_step(x, x_nat, grad, eps, 0.02, norm=norm)
        pgd_step_(x, x_nat, grad, eps, 0.02, norm=norm)
    assert_close(out, ref)
    assert_close(x, ref)
