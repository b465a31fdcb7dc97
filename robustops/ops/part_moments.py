"""part_moments: the bbox part features of part-based models (METHODS.md section 1), fused.

From part logits M (B, K+1, H, W) (channel 0 = background), in one pass over M:

    S = softmax over channels of M
    per part k = 1..K (background excluded), with A_k = sum_hw S_k:
      c_x = sum_w w * sum_h S_k / A_k              (c_y likewise over h)
      sigma_x = sqrt(sum_w (w - c_x)^2 * sum_h S_k / A_k)
      features = [A_k / (H W), c_x / W * 2 - 1, c_y / H * 2 - 1, sigma_x / W * 2, sigma_y / H * 2]

and, with ``weighted=True`` (the weighted-bbox head, the paper's default), the first
feature is the class score s_k = sum_hw M_k f with f = sigmoid(sum_{k>=1} M_k - M_0)
normalised to sum 1 over the pixels. Returns (B, K, 5) in M's dtype; x is the width
(column) axis, y the height (row) axis; pixel w sits at coordinate w (0..W-1).

Numerical guards (each changes a present part's features by < 1e-6): A_k + 1e-6 in
every division by the mass, sigma = sqrt(max(var, 0) + 1e-6) (a finite gradient for
one-pixel parts), and the foreground sum clamped to >= 1e-6 (as the paper's code).

Eager PyTorch materialises the softmax (B, K+1, H, W), two marginals and a dozen
reductions and their gradients; the fused op reads M once forward, keeping (B, 6K+1)
float64 moments and, when a gradient will be needed (grad mode on and M requiring
grad), the softmax S (in the compute dtype) for the backward, which then reads S (and M
in weighted mode, for f) and writes dL/dM over it in place (float32/float64; half types
get a new buffer): no exp over the channels again and one (B, K+1, H, W) allocation per
forward + backward, as without saving. Without a saved S (``save_softmax=False`` on the
op, or a second backward of the same graph) the backward recomputes S from M.

Layouts and dtypes: any layout (the kernels read contiguous NCHW; others are copied
once); float32 and float64 compute in their own precision, float16 and bfloat16 in
float32; moments accumulate in float64 on CPU. First-order differentiable in M (the
backward op has no derivative of its own).

Layers: custom ops ``robustops::part_moments`` (returns features, the moments and the
softmax, empty unless saved), ``robustops::part_moments_backward`` and
``robustops::part_moments_backward_inplace`` (the gradient over the saved softmax), the
plain-PyTorch references, fake kernels, autograd and validation here; kernels in
kernels/part_moments.h, csrc/cpu/part_moments.cpp, csrc/cuda/part_moments.cu and
robustops/triton/part_moments.py.
"""
from __future__ import annotations

import sys

import torch
from torch import Tensor

from .. import backend

__all__ = ["part_moments", "part_moments_reference", "part_moments_backward_reference",
           "part_moments_stats_reference", "PART_FEATURES"]

OP = "part_moments"
BACKENDS = ("reference", "cpp", "cuda", "triton")
_FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
PART_FEATURES = ("mass", "center_x", "center_y", "sigma_x", "sigma_y")
NUM_FEATURES = 5
NUM_MOMENTS = 6  # per part: A, X, XX, Y, YY, Q (kernels/part_moments.h); then F per image
MASS_EPS = 1e-6  # kPmMassEps
VAR_EPS = 1e-6   # kPmVarEps
FG_EPS = 1e-6    # kPmFgEps


def _opmath(dtype: torch.dtype) -> torch.dtype:
    # Half and bfloat16 logits compute in float32, as the kernels do.
    return torch.float64 if dtype == torch.float64 else torch.float32


# ----------------------------------------------------------------------------- reference


def part_moments_reference(logits: Tensor, weighted: bool = False) -> Tensor:
    """Plain-PyTorch part_moments: the oracle for every backend (no validation).

    logits (B, K+1, H, W) -> (B, K, 5) in logits' dtype, written as METHODS.md states
    the features (two passes: centre, then spread about it); differentiable by autograd
    (the tests use that as a second oracle for the backward).
    """
    ct = _opmath(logits.dtype)
    m = logits.to(ct)
    _, _, h, w = m.shape
    s = torch.softmax(m, 1)[:, 1:]
    gx = torch.arange(w, dtype=ct, device=m.device)
    gy = torch.arange(h, dtype=ct, device=m.device)
    sx, sy = s.sum(2), s.sum(3)                      # (B, K, W), (B, K, H) marginals
    mass = s.sum((2, 3))
    at = mass + MASS_EPS
    cx = (sx * gx).sum(-1) / at
    cy = (sy * gy).sum(-1) / at
    var_x = (sx * (gx - cx[..., None]) ** 2).sum(-1) / at
    var_y = (sy * (gy - cy[..., None]) ** 2).sum(-1) / at
    sig_x = torch.sqrt(var_x.clamp_min(0) + VAR_EPS)
    sig_y = torch.sqrt(var_y.clamp_min(0) + VAR_EPS)
    if weighted:
        f = torch.sigmoid(m[:, 1:].sum(1) - m[:, 0])            # (B, H, W)
        f = f / f.sum((1, 2), keepdim=True).clamp_min(FG_EPS)
        first = (m[:, 1:] * f[:, None]).sum((2, 3))
    else:
        first = mass / (h * w)
    out = torch.stack([first, cx / w * 2 - 1, cy / h * 2 - 1, sig_x / w * 2, sig_y / h * 2], -1)
    return out.to(logits.dtype)


def part_moments_stats_reference(logits: Tensor, weighted: bool = False) -> Tensor:
    """The (B, 6K+1) float64 moments the kernels keep for the backward.

    Row b: for part k (0-based j = k - 1) entries 6j..6j+5 are A, X, XX, Y, YY, Q with
    centred coordinates u = w - (W-1)/2, v = h - (H-1)/2 (kernels/part_moments.h); the
    last entry is F = sum_hw f. Q and F are 0 unless weighted.
    """
    m = logits.to(_opmath(logits.dtype))
    b, c, h, w = m.shape
    s = torch.softmax(m, 1)[:, 1:].to(torch.float64)
    u = torch.arange(w, dtype=torch.float64, device=m.device) - (w - 1) / 2
    v = torch.arange(h, dtype=torch.float64, device=m.device) - (h - 1) / 2
    sx, sy = s.sum(2), s.sum(3)
    cols = [s.sum((2, 3)), (sx * u).sum(-1), (sx * u * u).sum(-1), (sy * v).sum(-1),
            (sy * v * v).sum(-1)]
    if weighted:
        f = torch.sigmoid(m[:, 1:].sum(1) - m[:, 0]).to(torch.float64)
        cols.append((m[:, 1:].to(torch.float64) * f[:, None]).sum((2, 3)))
        fsum = f.sum((1, 2))
    else:
        cols.append(torch.zeros_like(cols[0]))
        fsum = torch.zeros(b, dtype=torch.float64, device=m.device)
    return torch.cat([torch.stack(cols, -1).reshape(b, 6 * (c - 1)), fsum[:, None]], 1)


def _coefficients(grad: Tensor, stats: Tensor, h: int, w: int, weighted: bool):
    """PmCoeffs of kernels/part_moments.h for every (b, k), in float64: (a, b, c, d, e, dq)
    each (B, K), and dF (B,)."""
    g = grad.to(torch.float64)
    bsz = stats.shape[0]
    mom = stats[:, :-1].reshape(bsz, -1, NUM_MOMENTS)
    fsum = stats[:, -1]
    a = mom[..., 0]
    at = a + MASS_EPS
    coef_a = torch.zeros_like(a) if weighted else g[..., 0] / (h * w)
    lin, quad = [], []
    for x, xx, mid, gc, gs in ((mom[..., 1], mom[..., 2], (w - 1) / 2, g[..., 1] * 2 / w,
                                g[..., 3] * 2 / w),
                               (mom[..., 3], mom[..., 4], (h - 1) / 2, g[..., 2] * 2 / h,
                                g[..., 4] * 2 / h)):
        d = (x - mid * MASS_EPS) / at
        var = (xx - 2 * d * x + d * d * a) / at
        sigma = torch.sqrt(var.clamp_min(0) + VAR_EPS)
        gvar = torch.where(var > 0, gs / (2 * sigma), torch.zeros_like(gs))
        gd = gc + gvar * 2 * (d * a - x) / at
        quad.append(gvar / at)
        lin.append((gd - 2 * gvar * d) / at)
        coef_a = coef_a + (gvar * (d * d - var) - gd * d) / at
    if weighted:
        fc = fsum.clamp_min(FG_EPS)[:, None]
        dq = g[..., 0] / fc
        dfsum = torch.where(fsum > FG_EPS, -(g[..., 0] * mom[..., 5] / (fc * fc)).sum(-1),
                            torch.zeros_like(fsum))
    else:
        dq = torch.zeros_like(a)
        dfsum = torch.zeros_like(fsum)
    return coef_a, lin[0], quad[0], lin[1], quad[1], dq, dfsum


def part_moments_backward_reference(grad: Tensor, logits: Tensor, stats: Tensor,
                                    weighted: bool = False,
                                    softmax: Tensor | None = None) -> Tensor:
    """Analytic dL/dlogits (B, K+1, H, W) from dL/dfeatures (B, K, 5) and the moments.

    The per-pixel gradient wrt S_k is a quadratic in the centred coordinates, then the
    softmax and (weighted) sigmoid Jacobians apply (kernels/part_moments.h). softmax: the
    forward's saved S (B, K+1, H, W), used instead of recomputing it when given and not
    empty.
    """
    ct = _opmath(logits.dtype)
    m = logits.to(ct)
    _, _, h, w = m.shape
    ca, cb, cc, cd, ce, dq, dfsum = (t.to(ct) for t in _coefficients(grad, stats, h, w,
                                                                      weighted))
    u = torch.arange(w, dtype=ct, device=m.device) - (w - 1) / 2
    v = torch.arange(h, dtype=ct, device=m.device) - (h - 1) / 2
    e4 = (lambda t: t[:, :, None, None])
    gk = (e4(ca) + e4(cb) * u + e4(cc) * u * u + e4(cd) * v[:, None]
          + e4(ce) * (v * v)[:, None])                               # (B, K, H, W)
    s = (softmax.to(ct) if softmax is not None and softmax.numel() > 0
         else torch.softmax(m, 1))
    dot = (s[:, 1:] * gk).sum(1, keepdim=True)
    g_full = torch.cat([torch.zeros_like(dot), gk], 1)
    out = s * (g_full - dot)
    if weighted:
        f = torch.sigmoid(m[:, 1:].sum(1) - m[:, 0])[:, None]        # (B, 1, H, W)
        phi = (e4(dq) * m[:, 1:]).sum(1, keepdim=True) + dfsum[:, None, None, None]
        sp = phi * f * (1 - f)
        out = out + torch.cat([-sp, e4(dq) * f + sp], 1)
    return out.to(logits.dtype)


# ----------------------------------------------------------------------------- custom ops


def _kernel(logits: Tensor):
    """The backend to run and logits as the kernels need them (contiguous NCHW)."""
    return backend.resolve(logits.device, OP, BACKENDS), logits.contiguous()


def _softmax_shape(logits: Tensor, save_softmax: bool):
    return tuple(logits.shape) if save_softmax else (0,)


def _empty_outputs(logits: Tensor, save_softmax: bool):
    b, c = logits.shape[:2]
    feats = torch.empty((b, c - 1, NUM_FEATURES), dtype=logits.dtype, device=logits.device)
    stats = torch.empty((b, NUM_MOMENTS * (c - 1) + 1), dtype=torch.float64,
                        device=logits.device)
    softmax = torch.empty(_softmax_shape(logits, save_softmax), dtype=_opmath(logits.dtype),
                          device=logits.device)
    return feats, stats, softmax


@torch.library.custom_op("robustops::part_moments", mutates_args=())
def _part_moments_op(logits: Tensor, weighted: bool,
                     save_softmax: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """(features, stats, softmax): softmax is S (B, K+1, H, W) in the compute dtype when
    save_softmax, else empty (0,); the backward uses it instead of recomputing S."""
    name, m = _kernel(logits)
    if name == "reference":
        ct = _opmath(logits.dtype)
        sm = (torch.softmax(logits.to(ct), 1) if save_softmax
              else logits.new_empty((0,), dtype=ct))
        return (part_moments_reference(logits, weighted),
                part_moments_stats_reference(logits, weighted), sm)
    feats, stats, sm = _empty_outputs(m, save_softmax)
    if m.shape[0] == 0:
        return feats, stats, sm
    if name == "triton":
        from ..triton.part_moments import part_moments_triton
        part_moments_triton(feats, stats, sm, m, weighted)
    else:
        backend.extension().part_moments(feats, stats, sm, m, weighted)
    return feats, stats, sm


@_part_moments_op.register_fake
def _(logits, weighted, save_softmax=False):
    b, c = logits.shape[:2]
    return (logits.new_empty((b, c - 1, NUM_FEATURES)),
            logits.new_empty((b, NUM_MOMENTS * (c - 1) + 1), dtype=torch.float64),
            logits.new_empty(_softmax_shape(logits, save_softmax),
                             dtype=_opmath(logits.dtype)))


@torch.library.custom_op("robustops::part_moments_backward", mutates_args=())
def _part_moments_backward_op(grad: Tensor, logits: Tensor, stats: Tensor, softmax: Tensor,
                              weighted: bool) -> Tensor:
    """dL/dlogits; softmax: the forward's saved S, or empty (then recomputed from logits)."""
    saved = softmax.numel() > 0
    if saved and (softmax.shape != logits.shape or softmax.dtype != _opmath(logits.dtype)):
        raise ValueError(f"part_moments_backward: softmax must be empty or "
                         f"{tuple(logits.shape)} {_opmath(logits.dtype)} (the forward's), "
                         f"got {tuple(softmax.shape)} {softmax.dtype}")
    name = backend.resolve(logits.device, OP, BACKENDS)
    if name == "reference":
        return part_moments_backward_reference(grad, logits, stats, weighted, softmax)
    # bbox mode with a saved softmax never reads the logits: no copy of a strided input.
    m = logits if saved and not weighted else logits.contiguous()
    out = torch.empty(m.shape, dtype=m.dtype, device=m.device)
    if m.shape[0] == 0:
        return out
    g = grad.to(torch.float64).contiguous()
    st = stats.to(torch.float64).contiguous()
    sm = softmax.contiguous()
    if name == "triton":
        from ..triton.part_moments import part_moments_backward_triton
        part_moments_backward_triton(out, g, m, st, sm, weighted)
    else:
        backend.extension().part_moments_backward(out, g, m, st, sm, weighted)
    return out


@_part_moments_backward_op.register_fake
def _(grad, logits, stats, softmax, weighted):
    return torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)


@torch.library.custom_op("robustops::part_moments_backward_inplace", mutates_args=("softmax",))
def _part_moments_backward_inplace_op(grad: Tensor, logits: Tensor, stats: Tensor,
                                      softmax: Tensor, weighted: bool) -> None:
    """part_moments_backward written over the saved softmax (B, K+1, H, W), contiguous and
    of logits' dtype (float32 or float64): no allocation of the gradient (a second
    (B, K+1, H, W) buffer per step is what lets glibc hand the memory back to the OS and
    re-fault it on every call)."""
    if (softmax.shape != logits.shape or softmax.dtype != logits.dtype
            or not softmax.is_contiguous()):
        raise ValueError(f"part_moments_backward_inplace: softmax must be a contiguous "
                         f"{tuple(logits.shape)} {logits.dtype} tensor, got "
                         f"{tuple(softmax.shape)} {softmax.dtype}")
    name = backend.resolve(logits.device, OP, BACKENDS)
    if name == "reference":
        softmax.copy_(part_moments_backward_reference(grad, logits, stats, weighted, softmax))
        return
    if logits.shape[0] == 0:
        return
    m = logits if not weighted else logits.contiguous()
    g = grad.to(torch.float64).contiguous()
    st = stats.to(torch.float64).contiguous()
    if name == "triton":
        from ..triton.part_moments import part_moments_backward_triton
        part_moments_backward_triton(softmax, g, m, st, softmax, weighted)
    else:
        backend.extension().part_moments_backward(softmax, g, m, st, softmax, weighted)


@_part_moments_backward_inplace_op.register_fake
def _(grad, logits, stats, softmax, weighted):
    return None


def _setup_context(ctx, inputs, output):
    logits, weighted = inputs[:2]
    ctx.weighted = weighted
    ctx.save_for_backward(logits, output[1])
    # The saved softmax is held as an attribute, not saved: the first backward turns it
    # into the gradient in place (and returns it) and drops it; a second backward of the
    # same graph (retain_graph=True) finds None and recomputes S from the logits. It is a
    # non-differentiable output (no grad_fn), so holding it makes no reference cycle.
    ctx.softmax = output[2]
    ctx.mark_non_differentiable(output[1], output[2])
    # No zero-filled (B, K+1, H, W) "gradient" of the softmax output per backward.
    ctx.set_materialize_grads(False)


def _storage_unshared(t: Tensor) -> bool:
    """True when no other tensor (a .detach(), a view, .data) shares t's storage."""
    storage = t.untyped_storage()  # this handle holds one reference; t holds the other
    return torch._C._storage_Use_Count(storage._cdata) == 2


def _backward(ctx, grad, _grad_stats, _grad_softmax):
    logits, stats = ctx.saved_tensors
    if grad is None:  # grads are not materialised; only the features are differentiable
        grad = stats.new_zeros((stats.shape[0], logits.shape[1] - 1, NUM_FEATURES))
    softmax, ctx.softmax = ctx.softmax, None
    if softmax is None or softmax.numel() == 0:
        softmax = logits.new_empty((0,), dtype=_opmath(logits.dtype))
    elif (softmax.dtype == logits.dtype and type(softmax) is Tensor
          and not torch.compiler.is_compiling()
          and softmax._use_count() == 1 and sys.getrefcount(softmax) == 2
          and _storage_unshared(softmax)):
        # float32 / float64 and nothing else holds S (the public part_moments drops it;
        # one reference here, one getrefcount's argument): it becomes dL/dlogits in place.
        # Otherwise (a caller of the op keeps it, or AOTAutograd traces this backward with
        # tensor subclasses: a traced graph may not mutate a forward output) out of place.
        _part_moments_backward_inplace_op(grad, logits, stats, softmax, ctx.weighted)
        return softmax, None, None
    return _part_moments_backward_op(grad, logits, stats, softmax, ctx.weighted), None, None


_part_moments_op.register_autograd(_backward, setup_context=_setup_context)


# ----------------------------------------------------------------------------- public API


def _validate(logits, weighted) -> None:
    if not isinstance(logits, Tensor):
        raise ValueError(f"part_moments: logits must be a (B, K+1, H, W) tensor, got "
                         f"{type(logits).__name__}")
    if logits.dtype not in _FLOAT_DTYPES:
        raise ValueError(f"part_moments: logits must be float32, float64, float16 or bfloat16, "
                         f"got {logits.dtype}")
    if logits.ndim != 4:
        raise ValueError(f"part_moments: logits must be 4-D (B, K+1, H, W) part logits, got "
                         f"shape {tuple(logits.shape)}")
    if logits.shape[1] < 2:
        raise ValueError(f"part_moments: logits need at least 2 channels (background + one "
                         f"part), got {logits.shape[1]}")
    if logits.shape[2] == 0 or logits.shape[3] == 0:
        raise ValueError(f"part_moments: logits need at least one pixel, got shape "
                         f"{tuple(logits.shape)}")
    if not isinstance(weighted, bool):
        raise ValueError(f"part_moments: weighted must be a bool, got {weighted!r}")


def part_moments(logits: Tensor, weighted: bool = False) -> Tensor:
    """Per-part bbox features of part logits, fused (see the module docstring).

    logits: (B, K+1, H, W) floating part logits, channel 0 the background, K >= 1.
    weighted: False -> features [mass, c_x, c_y, sigma_x, sigma_y] (the bbox head);
    True -> [score, c_x, c_y, sigma_x, sigma_y] with the foreground-weighted class score
    (the weighted-bbox head). Returns (B, K, 5) in logits' dtype, normalised: mass in
    [0, 1], centres in [-1, 1), sigmas in [0, 1]. Differentiable in logits (first order).
    NaN/Inf in logits propagate to the features of their image.
    """
    _validate(logits, weighted)
    # Save S for the backward only when there will be one (not under no_grad / eval).
    save = torch.is_grad_enabled() and logits.requires_grad
    if _eager_cpp_ok(logits):
        if save:
            return _EagerPartMoments.apply(logits, weighted)
        m = logits.contiguous()
        feats, stats, sm = _empty_outputs(m, False)
        if m.shape[0]:
            backend.extension().part_moments(feats, stats, sm, m, weighted)
        return feats
    return _part_moments_op(logits, weighted, save)[0]


_is_functorch_wrapped = torch._C._functorch.is_functorch_wrapped_tensor


def _eager_cpp_ok(logits: Tensor) -> bool:
    """Plain eager float32/float64 CPU call that nothing observes (no torch.compile, dispatch
    mode, functorch transform or tensor subclass): the kernels can run without the
    dispatcher, whose Python cost 0.09-0.21 ms of a 1.5 ms forward+backward at
    (32, 11, 64, 64) on one thread (measured)."""
    return (type(logits) is Tensor and logits.device.type == "cpu"
            and logits.dtype in (torch.float32, torch.float64)
            and not torch.compiler.is_compiling() and not torch._C._len_torch_dispatch_stack()
            and not _is_functorch_wrapped(logits)
            and backend.resolve(logits.device, OP, BACKENDS) == "cpp")


class _EagerPartMoments(torch.autograd.Function):
    """The custom op's forward and backward kernels under a plain autograd.Function (eager
    CPU only; same kernels, same numbers). The softmax it saves is never exposed, so the
    backward always writes the gradient over it."""

    @staticmethod
    def forward(ctx, logits: Tensor, weighted: bool) -> Tensor:
        m = logits.contiguous()
        feats, stats, sm = _empty_outputs(m, True)
        if m.shape[0]:
            backend.extension().part_moments(feats, stats, sm, m, weighted)
        ctx.weighted = weighted
        ctx.save_for_backward(m, stats)
        ctx.softmax = sm  # consumed by the first backward (see _setup_context)
        ctx.set_materialize_grads(False)
        return feats

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        if grad is None:
            return None, None
        m, stats = ctx.saved_tensors
        sm, ctx.softmax = ctx.softmax, None
        if m.shape[0] == 0:
            return torch.zeros_like(m), None
        g = grad.to(torch.float64).contiguous()
        if sm is None:  # a second backward of the graph (retain_graph): recompute S
            out = torch.empty_like(m)
            backend.extension().part_moments_backward(out, g, m, stats, m.new_empty((0,)),
                                                      ctx.weighted)
            return out, None
        backend.extension().part_moments_backward(sm, g, m, stats, sm, ctx.weighted)
        return sm, None
