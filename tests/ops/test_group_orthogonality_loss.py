"""group_orthogonality_loss: the paper's OrthogonalLoss (numpy), every backend against the
reference (forward and backward), gradcheck, empty groups, the op contract."""
import numpy as np
import pytest
import torch

from robustops import backend, group_orthogonality_loss
from robustops.bench.tenet_reference import orthogonality_loss
from robustops.ops.group_orthogonality_loss import (group_orthogonality_loss_backward_reference,
                                                    group_orthogonality_loss_reference)
from robustops.testing import assert_close

ALL = ["reference", "cpp", "triton"]


def inputs(b, c, h, w, k, seed=0, dtype=torch.float64):
    """F of both signs (so inner products of both signs), an empty group in sample 0."""
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(b, c, h, w, generator=g, dtype=torch.float64).to(dtype)
    a = torch.randint(0, k, (b, c), generator=g)
    if k > 1:
        a[0][a[0] == k - 1] = 0
    return f, a


def _use(be):
    if be not in backend.available():
        pytest.skip(f"{be} not available")
    return backend.use(be)


# ----------------------------------------------------------------------------- the paper's loss


@pytest.mark.parametrize("be", ALL)
def test_matches_paper_loss_fp64(be):
    f, a = inputs(3, 10, 3, 4, 4, seed=1)
    with _use(be):
        loss = group_orthogonality_loss(f, a, 4)
    assert loss.shape == () and loss.dtype == torch.float64
    expected = orthogonality_loss(f.numpy(), a.numpy(), 4)
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-12)


@pytest.mark.parametrize("be", ALL)
def test_single_group_and_empty_batch(be):
    f, _ = inputs(2, 5, 2, 2, 3, seed=2)
    one = torch.zeros(2, 5, dtype=torch.int64)  # K' = 1: no pair, P = 1, loss 0
    x = f.clone().requires_grad_(True)
    with _use(be):
        loss = group_orthogonality_loss(x, one, 3)
        loss.backward()
        empty = torch.zeros(0, 5, 2, 2, requires_grad=True)
        le = group_orthogonality_loss(empty, torch.zeros(0, 5, dtype=torch.int64), 3)
        le.backward()
    assert loss.item() == 0.0 == orthogonality_loss(f.numpy(), one.numpy(), 3)
    assert torch.equal(x.grad, torch.zeros_like(f))
    assert le.item() == 0.0 and empty.grad.shape == empty.shape


# ----------------------------------------------------------------------------- backends


def test_reference_backward_matches_autograd():
    f, a = inputs(3, 9, 2, 3, 4, seed=3)
    x = f.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(group_orthogonality_loss_reference(x, a, 4) * 0.7, x)
    analytic = group_orthogonality_loss_backward_reference(torch.tensor(0.7, dtype=f.dtype),
                                                           f, a, 4)
    assert_close(analytic, auto)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(3, 7, 3, 5, 3), (1, 4, 1, 1, 4), (2, 5, 2, 2, 1)],
                         ids=["odd", "k_eq_c_1px", "k1"])
def test_backend_matches_reference(kernel_backend, dtype, shape):
    b, c, h, w, k = shape
    f, a = inputs(b, c, h, w, k, seed=4, dtype=dtype)
    x = f.clone().requires_grad_(True)
    loss = group_orthogonality_loss(x, a, k)
    go = torch.tensor(1.3, dtype=dtype)
    (grad,) = torch.autograd.grad(loss, x, go)
    assert loss.shape == () and loss.dtype == dtype
    assert_close(loss, group_orthogonality_loss_reference(f, a, k), kernel_backend)
    assert_close(grad, group_orthogonality_loss_backward_reference(go, f, a, k), kernel_backend)


def test_backend_layouts(kernel_backend):
    f, a = inputs(2, 6, 3, 3, 3, seed=5)
    expected = group_orthogonality_loss_reference(f, a, 3)
    x = f.contiguous(memory_format=torch.channels_last).requires_grad_(True)
    loss = group_orthogonality_loss(x, a.t().contiguous().t(), 3)
    loss.backward()
    assert_close(loss, expected)
    assert_close(x.grad, group_orthogonality_loss_backward_reference(torch.tensor(1.0,
                 dtype=f.dtype), f, a, 3))


@pytest.mark.parametrize("be", ALL)
def test_gradcheck_fp64(be):
    f, a = inputs(2, 6, 2, 2, 3, seed=6)
    x = f.clone().requires_grad_(True)
    # The interpreter runs ~1 ms per program: Triton gets gradcheck's fast mode.
    with _use(be):
        assert torch.autograd.gradcheck(lambda t: group_orthogonality_loss(t, a, 3), (x,),
                                        eps=1e-6, atol=1e-7, rtol=1e-5,
                                        fast_mode=be == "triton")


# ----------------------------------------------------------------------------- op contract


def test_cpu_label_check():
    f, a = inputs(2, 5, 2, 2, 3, seed=7)
    a[0, 2] = 5
    with pytest.raises(ValueError, match=r"assignment\[0, 2\] = 5 is not a group label"):
        group_orthogonality_loss(f, a, 3)


@pytest.mark.parametrize("requires_grad", [False, True])
def test_opcheck(requires_grad):
    f, a = inputs(2, 6, 2, 3, 3, seed=8)
    torch.library.opcheck(torch.ops.robustops.group_orthogonality_loss.default,
                          (f.clone().requires_grad_(requires_grad), a, 3))
    torch.library.opcheck(torch.ops.robustops.group_orthogonality_loss_backward.default,
                          (torch.tensor(0.5, dtype=f.dtype), f, a, 3))


def test_op_contract():
    # Direct calls: the C++ checks (labels on the CPU), the C++ autograd kernel (one
    # saved F, the backward op), and no double backward.
    f, a = inputs(2, 5, 2, 2, 3, seed=12)
    op = torch.ops.robustops.group_orthogonality_loss
    bad = a.clone()
    bad[0, 2] = 5
    with pytest.raises(ValueError, match=r"assignment\[0, 2\] = 5 is not a group label"):
        op(f, bad, 3)
    with pytest.raises(ValueError, match="grad_out must hold one value"):
        torch.ops.robustops.group_orthogonality_loss_backward(torch.ones(2, dtype=f.dtype), f,
                                                              a, 3)
    x = f.clone().requires_grad_(True)
    loss = op(x, a, 3)
    (grad,) = torch.autograd.grad(loss, x, create_graph=False)
    assert_close(grad, group_orthogonality_loss_backward_reference(torch.tensor(1.0,
                 dtype=f.dtype), f, a, 3))
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(op(x, a, 3), x, create_graph=True)


def test_compiles_fullgraph():
    torch._dynamo.reset()
    f, a = inputs(2, 6, 2, 3, 3, seed=9, dtype=torch.float32)

    def objective(x, labels):
        return 1e-3 * group_orthogonality_loss(x, labels, 3) + x.square().mean()

    compiled = torch.compile(objective, fullgraph=True)
    x1 = f.clone().requires_grad_(True)
    x2 = f.clone().requires_grad_(True)
    l1, l2 = compiled(x1, a), objective(x2, a)
    l1.backward()
    l2.backward()
    assert_close(l1, l2)
    assert_close(x1.grad, x2.grad)


def _bad_cases():
    f, a = inputs(2, 5, 2, 2, 3, seed=10, dtype=torch.float32)
    return [
        ("2-D", dict(features=f[0, 0]), r"4-D \(B, C, H, W\)"),
        ("int dtype", dict(features=f.long()), "float32 or float64"),
        ("bfloat16", dict(features=f.bfloat16()), "float32 or float64"),
        ("assignment shape", dict(assignment=a[:1]), r"assignment must be a \(2, 5\) int64"),
        ("assignment dtype", dict(assignment=a.to(torch.int32)), "int64"),
        ("assignment device", dict(assignment=a.to("meta")), "assignment is on meta"),
        ("K = 0", dict(num_groups=0), r"num_groups must be in \[1, C\] = \[1, 5\]"),
        ("K > C", dict(num_groups=9), r"num_groups must be in \[1, C\]"),
        ("float K", dict(num_groups=3.0), r"num_groups must be an int, got 3.0 \(float\)",
         TypeError),
    ]


@pytest.mark.parametrize("case", _bad_cases(), ids=lambda c: c[0])
def test_bad_input_raises_clear_error(case):
    _, override, match, *error = case
    f, a = inputs(2, 5, 2, 2, 3, seed=10, dtype=torch.float32)
    args = dict(features=f, assignment=a, num_groups=3)
    args.update(override)
    with pytest.raises(error[0] if error else ValueError, match=match):
        group_orthogonality_loss(**args)


# ----------------------------------------------------------------------------- GPU


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gpu_backend_matches_reference(be, dtype):
    f, a = inputs(16, 256, 16, 16, 6, seed=11, dtype=dtype)
    f, a = f.cuda(), a.cuda()
    x = f.clone().requires_grad_(True)
    go = torch.tensor(0.9, dtype=dtype, device="cuda")
    with backend.use(be):
        loss = group_orthogonality_loss(x, a, 6)
        (grad,) = torch.autograd.grad(loss, x, go)
    assert_close(loss, group_orthogonality_loss_reference(f, a, 6), be)
    assert_close(grad, group_orthogonality_loss_backward_reference(go, f, a, 6), be)
