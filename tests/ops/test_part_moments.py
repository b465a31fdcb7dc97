"""part_moments: hand-computed bbox features, every backend vs the reference, the op contract."""
import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from robustops import backend, part_moments
from robustops.ops.part_moments import (part_moments_backward_reference, part_moments_reference,
                                        part_moments_stats_reference)
from robustops.testing import assert_close

OPS = torch.ops.robustops


def op(name):
    """The selected backend's op: robustops::<name> (the C++ op: cpp, cuda) or, under the
    triton backend, robustops::<name>_triton."""
    return getattr(OPS, f"{name}_triton" if backend.current() == "triton" else name)


def logits_of(shape, seed=0, dtype=torch.float64, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(dtype)


def one_hot_logits(mask, num_parts, value=60.0):
    """Logits whose softmax is (numerically) the one-hot mask (H, W) -> (1, K+1, H, W)."""
    m = torch.nn.functional.one_hot(mask, num_parts + 1).permute(2, 0, 1).to(torch.float64)
    return (m * value)[None]


# ----------------------------------------------------------------------------- reference


def test_bbox_features_of_a_constructed_mask():
    # 4 x 6 image; part 1 = rows 1-2, columns 2-4 (6 pixels); part 2 absent.
    mask = torch.zeros(4, 6, dtype=torch.int64)
    mask[1:3, 2:5] = 1
    m = one_hot_logits(mask, 2)
    for f in (part_moments_reference(m), part_moments(m)):
        p1 = f[0, 0].tolist()
        # mass A/(HW) = 6/24; centre x = 3 -> 3/6*2-1 = 0; centre y = 1.5 -> 1.5/4*2-1 = -0.25;
        # sigma_x = sqrt(((2-3)^2 + 0 + (4-3)^2)/3) = sqrt(2/3) -> /6*2; sigma_y = 0.5 -> /4*2.
        expected = [0.25, 0.0, -0.25, math.sqrt(2 / 3) / 3, 0.25]
        assert p1 == pytest.approx(expected, abs=1e-6)
        assert f[0, 1, 0].item() == pytest.approx(0.0, abs=1e-12)  # absent part: no mass
    # Weighted: f = sigmoid(M_1 + M_2 - M_0) is ~1 on the part, ~0 elsewhere, so the score
    # of part 1 is its mean logit there (60) and part 2's is 0.
    fw = part_moments(m, weighted=True)
    assert fw[0, 0, 0].item() == pytest.approx(60.0, rel=1e-9)
    assert fw[0, 1, 0].item() == pytest.approx(0.0, abs=1e-9)
    assert_close(fw[0, 0, 1:], part_moments(m)[0, 0, 1:])


@pytest.mark.parametrize("weighted", [False, True])
def test_reference_backward_matches_autograd(weighted):
    m = logits_of((2, 4, 5, 7), seed=1).requires_grad_()
    out = part_moments_reference(m, weighted)
    g = torch.randn_like(out)
    (auto,) = torch.autograd.grad(out, m, g)
    stats = part_moments_stats_reference(m.detach(), weighted)
    assert_close(part_moments_backward_reference(g, m.detach(), stats, weighted), auto)


# ----------------------------------------------------------------------------- backends

SHAPES = [(2, 4, 5, 7), (1, 2, 17, 3), (3, 11, 9, 20)]


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_backend_matches_reference(kernel_backend, shape, dtype, weighted):
    m = logits_of(shape, seed=2, dtype=dtype)
    feats, stats, none = op("part_moments")(m, weighted)
    assert feats.shape == (shape[0], shape[1] - 1, 5) and feats.dtype == dtype
    assert stats.dtype == torch.float64 and none.numel() == 0
    assert_close(feats, part_moments_reference(m, weighted), kernel_backend)
    ref_stats = part_moments_stats_reference(m, weighted)
    torch.testing.assert_close(stats, ref_stats, rtol=1e-5 if dtype == torch.float32 else 1e-10,
                               atol=1e-5 if dtype == torch.float32 else 1e-10)
    # Saving the softmax changes neither the features nor the stats.
    feats_s, stats_s, soft = op("part_moments")(m, weighted, True)
    assert torch.equal(feats_s, feats) and torch.equal(stats_s, stats)
    assert soft.shape == m.shape and soft.dtype == dtype
    torch.testing.assert_close(soft, torch.softmax(m, 1))
    g = torch.randn(feats.shape, dtype=torch.float64)
    grad = op("part_moments_backward")(g, m, stats, none, weighted)
    assert grad.shape == m.shape and grad.dtype == dtype
    expected = part_moments_backward_reference(g, m, ref_stats, weighted)
    assert_close(grad, expected, kernel_backend)
    # The backward from the saved softmax: the recomputed S is the saved one, bit for bit,
    # in the C++ kernels (same arithmetic), so their gradients are equal.
    grad_s = op("part_moments_backward")(g, m, stats, soft, weighted)
    assert_close(grad_s, expected, f"{kernel_backend} saved softmax")
    if kernel_backend == "cpp":
        assert torch.equal(grad_s, grad)


@pytest.mark.parametrize("weighted", [False, True])
def test_softmax_saved_only_when_a_backward_will_run(monkeypatch, weighted):
    import sys
    pm = sys.modules["robustops.ops.part_moments"]  # the package exports a same-named function
    seen = []
    real = pm._OP_EAGER  # the one call of robustops::part_moments the public function makes
    monkeypatch.setattr(pm, "_OP_EAGER", lambda m, w, save: seen.append(save) or real(m, w, save))
    m = logits_of((2, 3, 4, 5), seed=10, dtype=torch.float32)
    part_moments(m, weighted)
    with torch.no_grad():
        part_moments(m.clone().requires_grad_(), weighted)
    leaf = m.clone().requires_grad_()
    out = part_moments(leaf, weighted)
    assert seen == [False, False, True]
    # And the backward of the saving forward matches the reference's autograd.
    ref_leaf = m.clone().requires_grad_()
    g = torch.randn(out.shape)
    assert_close(torch.autograd.grad(out, leaf, g)[0],
                 torch.autograd.grad(part_moments_reference(ref_leaf, weighted), ref_leaf, g)[0])


@pytest.mark.parametrize("weighted", [False, True])
def test_backward_over_the_saved_softmax(kernel_backend, weighted):
    # The in-place backward op (the gradient written over a softmax buffer the caller owns)
    # equals the reference; a second backward of the same graph (retain_graph) reads the
    # same saved S again and agrees.
    m = logits_of((2, 5, 7, 9), seed=12, dtype=torch.float32)
    _, stats, soft = op("part_moments")(m, weighted, True)
    g = torch.randn(2, 4, 5, dtype=torch.float64)
    expected = part_moments_backward_reference(g, m, part_moments_stats_reference(m, weighted),
                                               weighted)
    buf = soft.clone()
    op("part_moments_backward_inplace")(g, m, stats, buf, weighted)
    assert_close(buf, expected, kernel_backend)
    assert_close(buf, op("part_moments_backward")(g, m, stats, soft, weighted), kernel_backend)
    leaf = m.clone().requires_grad_()
    out = part_moments(leaf, weighted)
    first = torch.autograd.grad(out, leaf, g.float(), retain_graph=True)[0]
    second = torch.autograd.grad(out, leaf, g.float())[0]
    assert_close(first, expected, f"{kernel_backend} first")
    assert_close(second, first, f"{kernel_backend} second")


class _BackwardOps(TorchDispatchMode):
    """Records which part_moments backward op runs (in-place or out-of-place)."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name  # "robustops::part_moments_backward_inplace"
        if "part_moments_backward" in name:
            self.seen.append(name.split("::")[1])
        return func(*args, **(kwargs or {}))


def test_backward_writes_over_the_softmax_the_node_owns():
    # Recorded by autograd with no saved-tensor hooks, the op keeps S to itself (its third
    # output is empty, so no caller holds the buffer) and a backward that does not retain
    # the graph writes the gradient over S with the explicit in-place op; retain_graph takes
    # the out-of-place op, and every path gives the reference's gradient.
    leaf = logits_of((2, 4, 5, 6), seed=13, dtype=torch.float32).requires_grad_()
    expected = part_moments_backward_reference(
        torch.ones(2, 3, 5, dtype=torch.float64), leaf.detach(),
        part_moments_stats_reference(leaf.detach()), False)
    feats, _, soft = OPS.part_moments(leaf, False, True)
    assert soft.numel() == 0
    with _BackwardOps() as ops:
        (kept,) = torch.autograd.grad(feats.sum(), leaf, retain_graph=True)
        (freed,) = torch.autograd.grad(feats.sum(), leaf)
    assert ops.seen == ["part_moments_backward", "part_moments_backward_inplace"]
    assert_close(kept, expected)
    assert torch.equal(freed, kept)
    # Without autograd recording, the caller asked for S and gets it.
    with torch.no_grad():
        assert OPS.part_moments(leaf, False, True)[2].shape == leaf.shape


def test_hooks_keep_the_softmax_out_of_place():
    # A pack hook may keep a reference to S: then the op returns S as before and the
    # backward never writes over it.
    leaf = logits_of((2, 4, 5, 6), seed=14, dtype=torch.float32).requires_grad_()
    packed = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: packed.append(t) or t, lambda t: t):
        feats = part_moments(leaf, False)
    before = [t.clone() for t in packed]
    with _BackwardOps() as ops:
        (grad,) = torch.autograd.grad(feats.sum(), leaf)
    assert ops.seen == ["part_moments_backward"]
    assert all(torch.equal(a, b) for a, b in zip(packed, before))
    assert torch.equal(grad, torch.autograd.grad(part_moments(leaf, False).sum(), leaf)[0])


def test_backward_rejects_a_mismatched_softmax():
    m = logits_of((2, 3, 4, 5), seed=11, dtype=torch.float32)
    _, stats, soft = OPS.part_moments(m, False, True)
    g = torch.randn(2, 2, 5, dtype=torch.float64)
    with pytest.raises(ValueError, match="softmax must be empty or"):
        OPS.part_moments_backward(g, m, stats, soft[:, :2], False)
    with pytest.raises(ValueError, match="softmax must be a contiguous"):
        OPS.part_moments_backward_inplace(g, m, stats, soft.double(), False)


@pytest.mark.parametrize("name", ["part_moments_backward", "part_moments_backward_inplace"])
def test_backward_rejects_mismatched_grad_and_stats(name):
    # The kernels index grad and stats by (B, K): a wrong shape is a ValueError, never a
    # read past the end; the fake kernel says the same (torch.compile, meta tensors).
    m = logits_of((2, 3, 4, 5), seed=11, dtype=torch.float32)
    _, stats, soft = OPS.part_moments(m, False, True)
    g = torch.randn(2, 2, 5, dtype=torch.float64)
    fn = getattr(OPS, name)
    fn(g, m, stats, soft.clone(), False)  # the call itself is fine
    for meta in (False, True):
        to = (lambda t: t.to("meta")) if meta else (lambda t: t)
        with pytest.raises(ValueError, match=r"grad must be a floating \(B, K, 5\) = \(2, 2, 5\)"):
            fn(to(g[:, :1]), to(m), to(stats), to(soft.clone()), False)
        with pytest.raises(ValueError, match=r"stats must be the forward's \(B, 6K\+1\) = \(2, 13\)"):
            fn(to(g), to(m), to(stats[:, :-1]), to(soft.clone()), False)
    with pytest.raises(ValueError, match="stats is on meta but logits is on cpu"):
        fn(g, m, stats.to("meta"), soft.clone(), False)


@pytest.mark.parametrize("weighted", [False, True])
def test_backend_autograd_and_layouts(kernel_backend, weighted):
    base = logits_of((2, 5, 6, 8), seed=3, dtype=torch.float32)
    g = torch.randn(2, 4, 5)
    ref_m = base.clone().requires_grad_()
    expected = torch.autograd.grad(part_moments_reference(ref_m, weighted), ref_m, g)[0]
    layouts = {"contiguous": base,
               "channels_last": base.contiguous(memory_format=torch.channels_last),
               "strided": torch.stack([base, base], -1)[..., 0]}
    assert not layouts["strided"].is_contiguous()
    for name, m in layouts.items():
        leaf = m.detach().clone(memory_format=torch.preserve_format).requires_grad_()
        out = part_moments(leaf, weighted)
        assert_close(out, part_moments_reference(base, weighted), name)
        (grad,) = torch.autograd.grad(out, leaf, g)
        assert_close(grad, expected, f"{kernel_backend} {name} grad")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cpp_half_types(dtype):
    if "cpp" not in backend.available():
        pytest.skip("cpp backend not built")
    m = logits_of((2, 4, 6, 5), seed=4, dtype=dtype, scale=2.0)
    for weighted in (False, True):
        leaf = m.clone().requires_grad_()
        with backend.use("cpp"):
            out = part_moments(leaf, weighted)  # saves S in float32 for the backward
        assert out.dtype == dtype
        # Both compute in float32 from the same half inputs and round once.
        assert_close(out, part_moments_reference(m, weighted))
        g = torch.randn(out.shape, dtype=torch.float64)
        (grad,) = torch.autograd.grad(out, leaf, g.to(dtype))
        assert grad.dtype == dtype
        stats = part_moments_stats_reference(m, weighted)
        assert_close(grad, part_moments_backward_reference(g.to(dtype), m, stats, weighted))


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_triton_bfloat16_matches_reference(shape, weighted):
    # Issue 15: under the interpreter the bfloat16 features came back as zeros, denormals
    # or NaN (the float64 -> bfloat16 cast); the kernels compute in float32 for half inputs.
    if "triton" not in backend.available():
        pytest.skip("triton not available")
    m = logits_of(shape, seed=6, dtype=torch.bfloat16, scale=2.0)
    with backend.use("triton"):
        feats, stats, none = op("part_moments")(m, weighted)
        leaf = m.clone().requires_grad_()
        out = part_moments(leaf, weighted)
    assert feats.dtype == torch.bfloat16 and torch.isfinite(feats).all()
    assert torch.equal(out, feats)
    assert_close(feats, part_moments_reference(m, weighted), "triton bf16")
    ref_stats = part_moments_stats_reference(m, weighted)
    torch.testing.assert_close(stats, ref_stats, rtol=1e-5, atol=1e-5)
    g = torch.randn(feats.shape, dtype=torch.float64)
    (grad,) = torch.autograd.grad(out, leaf, g.to(torch.bfloat16))
    assert grad.dtype == torch.bfloat16
    assert_close(grad, part_moments_backward_reference(g.to(torch.bfloat16), m, ref_stats,
                                                       weighted), "triton bf16 grad")


def test_extreme_logits_stay_finite(kernel_backend):
    # Saturated softmax (one-hot), a part with one pixel and absent parts.
    mask = torch.zeros(5, 6, dtype=torch.int64)
    mask[2, 3] = 2
    m = one_hot_logits(mask, 3, value=200.0).float()
    leaf = m.clone().requires_grad_()
    out = part_moments(leaf, True)
    (grad,) = torch.autograd.grad(out.sum(), leaf)
    assert torch.isfinite(out).all() and torch.isfinite(grad).all()
    assert_close(out, part_moments_reference(m, True))


@pytest.mark.parametrize("be", ["reference", "cpp", "triton"])
@pytest.mark.parametrize("weighted", [False, True])
def test_gradcheck_fp64(be, weighted):
    if be not in backend.available():
        pytest.skip(f"{be} not available")
    m = logits_of((2, 3, 4, 5), seed=5).requires_grad_()
    # Fast mode (random projections) for the slow backends: the interpreter runs ~1 ms per
    # program, and the reference's backward is checked against autograd above.
    with backend.use(be):
        assert torch.autograd.gradcheck(lambda t: part_moments(t, weighted), (m,), eps=1e-6,
                                        atol=1e-7, rtol=1e-5, fast_mode=be != "cpp")


@pytest.mark.parametrize("be", ["reference", "cpp", "triton"])
def test_empty_batch(be):
    if be not in backend.available():
        pytest.skip(f"backend {be} not available here")
    with backend.use(be):
        _check_empty_batch()


def _check_empty_batch():
    m = torch.zeros(0, 4, 5, 6, requires_grad=True)
    out = part_moments(m, True)
    assert out.shape == (0, 3, 5)
    (grad,) = torch.autograd.grad(out.sum(), m)
    assert grad.shape == m.shape


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_propagates_to_its_image(kernel_backend, weighted, bad):
    """A NaN/Inf logit makes its image's centres and sigmas NaN, as the reference (whose clamp
    keeps the NaN; a plain max(var, 0) once turned it into a finite sigma)."""
    m = logits_of((2, 4, 5, 6), seed=6, dtype=torch.float32)
    m[1, 2, 1, 1] = bad
    out = part_moments(m, weighted)
    with backend.use("reference"):
        ref = part_moments(m, weighted)
    assert torch.isfinite(out[0]).all()
    assert torch.isnan(out[1, :, 1:]).all(), out[1]  # centres and sigmas
    torch.testing.assert_close(out, ref, equal_nan=True)  # (an Inf logit's score stays inf)


# ----------------------------------------------------------------------------- op contract


@pytest.mark.parametrize("suffix", ["", "_triton"], ids=["cpp", "triton"])
@pytest.mark.parametrize("save", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_opcheck(weighted, save, suffix):
    """The C++ ops (robustops::part_moments...) and the Triton backend's twins."""
    if suffix and "triton" not in backend.available():
        pytest.skip("triton not available")
    m = logits_of((2, 3, 4, 5), seed=7).requires_grad_()
    torch.library.opcheck(getattr(OPS, "part_moments" + suffix).default, (m, weighted, save))
    stats = part_moments_stats_reference(m.detach(), weighted)
    soft = torch.softmax(m.detach(), 1) if save else m.new_empty((0,))
    g = torch.randn(2, 2, 5, dtype=torch.float64)
    torch.library.opcheck(getattr(OPS, "part_moments_backward" + suffix).default,
                          (g, m.detach(), stats, soft, weighted))
    if save:
        torch.library.opcheck(getattr(OPS, "part_moments_backward_inplace" + suffix).default,
                              (g, m.detach(), stats, soft.clone(), weighted))


@pytest.mark.parametrize("weighted", [True, False])
def test_compiles_fullgraph(weighted):
    torch._dynamo.reset()
    m = logits_of((2, 4, 6, 6), seed=8, dtype=torch.float32)

    def head(t):
        return part_moments(torch.tanh(t) * 4, weighted).flatten(1).sum(1)

    compiled = torch.compile(head, fullgraph=True)
    leaf = m.clone().requires_grad_()
    out = compiled(leaf)
    assert_close(out, head(m))
    (grad,) = torch.autograd.grad(out.sum(), leaf)
    leaf2 = m.clone().requires_grad_()
    assert_close(grad, torch.autograd.grad(head(leaf2).sum(), leaf2)[0])


def _bad_cases():
    m = torch.zeros(2, 3, 4, 4)
    return [
        (m.long(), {}, "float32, float64, float16 or bfloat16"),
        (m[0], {}, r"must be 4-D \(B, K\+1, H, W\)"),
        (m[:, :1], {}, "at least 2 channels"),
        (m[:, :, :0], {}, "at least one pixel"),
    ]


@pytest.mark.parametrize("logits,kw,match", _bad_cases(),
                         ids=["int", "3d", "one channel", "no pixels"])
def test_bad_inputs_raise_clear_errors(logits, kw, match):
    with pytest.raises(ValueError, match=match):
        part_moments(logits, **kw)


def test_weighted_of_a_wrong_type_is_a_type_error():
    with pytest.raises(TypeError, match=r"part_moments: weighted must be a bool, got 1 \(int\)"):
        part_moments(torch.zeros(2, 3, 4, 4), weighted=1)


@pytest.mark.cuda
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_cuda_matches_reference(be, dtype, weighted):
    shapes = [(3, 11, 64, 64), (2, 4, 33, 47), (1, 2, 3, 5), (2, 41, 40, 40)]
    for shape in shapes:
        m = logits_of(shape, seed=9, dtype=dtype).cuda()
        with backend.use(be):
            feats, stats, _ = op("part_moments")(m, weighted)
            _, _, soft = op("part_moments")(m, weighted, True)
            g = torch.randn(feats.shape, dtype=torch.float64, device="cuda")
            grad = op("part_moments_backward")(g, m, stats, soft[:0].reshape(0), weighted)
            grad_saved = op("part_moments_backward")(g, m, stats, soft, weighted)
        ref_stats = part_moments_stats_reference(m, weighted)
        ref = part_moments_reference(m, weighted)
        ref_grad = part_moments_backward_reference(g, m, ref_stats, weighted)
        if dtype == torch.bfloat16:
            torch.testing.assert_close(feats.float(), ref.float(), rtol=2e-2, atol=2e-2)
            torch.testing.assert_close(grad.float(), ref_grad.float(), rtol=2e-2, atol=2e-3)
            torch.testing.assert_close(grad_saved.float(), ref_grad.float(), rtol=2e-2,
                                       atol=2e-3)
        else:
            tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else {}
            torch.testing.assert_close(feats, ref, **tol)
            torch.testing.assert_close(stats, ref_stats, rtol=1e-4 if tol else 1e-9,
                                       atol=1e-3 if tol else 1e-9)
            torch.testing.assert_close(grad, ref_grad, **tol)
            torch.testing.assert_close(grad_saved, ref_grad, **tol)


@pytest.mark.parametrize("weighted", [False, True])
def test_public_function_is_the_op(weighted):
    """The public function is one call of robustops::part_moments (its C++ autograd node):
    the same numbers bit for bit, forward and backward, a retained second backward too."""
    if "cpp" not in backend.compiled():
        pytest.skip("needs the C++ extension")
    torch.manual_seed(0)
    x = torch.randn(3, 4, 7, 5, dtype=torch.float64)
    a = x.clone().requires_grad_()
    fa = part_moments(a, weighted)
    assert "PartMomentsFunction" in fa.grad_fn.name()  # the C++ autograd node
    fa.sum().backward(retain_graph=True)
    ga = a.grad.clone()
    a.grad = None
    fa.sum().backward()  # second backward: the saved softmax is read again, unchanged
    b = x.clone().requires_grad_()
    fb = torch.ops.robustops.part_moments(b, weighted, True)[0]
    fb.sum().backward()
    assert torch.equal(fa, fb) and torch.equal(ga, b.grad) and torch.equal(a.grad, b.grad)
    assert torch.autograd.gradcheck(lambda t: part_moments(t, weighted), (x[:1, :, :3, :3]
                                    .clone().requires_grad_(),))


@pytest.mark.parametrize("weighted", [False, True])
def test_saved_tensors_hooks_see_the_saved_tensors(kernel_backend, weighted):
    """The forward saves the logits, the moments and the softmax with save_for_backward:
    saved_tensors_hooks pack each once and unpack each in the backward (here to a copy,
    as offloading does), and the gradient is unchanged."""
    base = logits_of((2, 4, 5, 6), seed=14, dtype=torch.float32)
    g = torch.randn(2, 3, 5)
    leaf = base.clone().requires_grad_()
    (expected,) = torch.autograd.grad(part_moments(leaf, weighted), leaf, g)
    packed, unpacked = [], []

    def pack(t):
        packed.append(t)
        return t.detach().clone()  # the backward must read what unpack returns

    def unpack(t):
        unpacked.append(t)
        return t

    leaf = base.clone().requires_grad_()
    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        out = part_moments(leaf, weighted)
    assert len(packed) == 3 and not unpacked
    logits, stats, soft = packed
    assert logits.data_ptr() == leaf.data_ptr()
    torch.testing.assert_close(stats, part_moments_stats_reference(base, weighted),
                               rtol=1e-5, atol=1e-5)
    assert soft.shape == base.shape and soft.dtype == torch.float32
    torch.testing.assert_close(soft, torch.softmax(base, 1))
    (grad,) = torch.autograd.grad(out, leaf, g)
    assert len(unpacked) == 3
    assert torch.equal(grad, expected)


def test_backward_reads_what_the_hooks_unpack():
    # No hidden state beside the saved tensors: a softmax of zeros handed back by the
    # unpack hook gives a zero bbox gradient (dL/dM = S * (...) with the saved S).
    leaf = logits_of((2, 4, 5, 6), seed=15, dtype=torch.float32).requires_grad_()
    calls = []

    def unpack(t):
        calls.append(t.shape)
        return torch.zeros_like(t) if len(calls) == 3 else t

    with torch.autograd.graph.saved_tensors_hooks(lambda t: t, unpack):
        out = part_moments(leaf, False)
    (grad,) = torch.autograd.grad(out.sum(), leaf)
    assert calls[2] == leaf.shape and torch.equal(grad, torch.zeros_like(grad))


@pytest.mark.parametrize("use_reentrant", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_activation_checkpointing(kernel_backend, weighted, use_reentrant):
    """torch.utils.checkpoint drops the saved tensors and recomputes the forward in the
    backward: the same gradient, bit for bit (the kernels are deterministic)."""
    from torch.utils.checkpoint import checkpoint

    base = logits_of((2, 4, 6, 5), seed=16, dtype=torch.float32)

    def head(t):
        return part_moments(torch.tanh(t) * 4, weighted)

    leaf = base.clone().requires_grad_()
    out = head(leaf)
    g = torch.randn(out.shape)
    out.backward(g)  # .backward(), not autograd.grad: the reentrant variant needs it
    leaf2 = base.clone().requires_grad_()
    checkpoint(head, leaf2, use_reentrant=use_reentrant).backward(g)
    assert torch.equal(leaf2.grad, leaf.grad)
