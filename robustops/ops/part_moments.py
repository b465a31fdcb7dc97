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

Numerical guards: A_k + 1e-6 in every division by the mass, sigma = sqrt(max(var, 0) +
1e-6) (a finite gradient for one-pixel parts), and the foreground sum clamped to >= 1e-6
(as the paper's code). What they change in a present part's features (mass A_k in
pixels, image W x H): the mass guard scales the centres and variances by A / (A + 1e-6),
moving a normalised centre by < 2e-6 / A; the variance guard adds up to 1e-3 pixel to
sigma, at most 2e-3 / W to the normalised sigma_x (2e-3 / H to sigma_y) - the most for
a one-pixel (zero-variance) part: 6.25e-5 at 32 px, 8.9e-6 at 224 px - and below
1e-6 / (W sigma_x) once sigma_x > 0 (so < 1e-6 for sigma_x >= 1 pixel); the foreground
clamp binds only where sum_hw f < 1e-6 (no foreground anywhere).

Absent parts (S_k = 0 at every pixel, e.g. logits far below another channel's): the
guards give the finite, in-range features [0, -1, -1, 2e-3 / W, 2e-3 / H] (mass 0 or, in
weighted mode, the class score; centre 0 / 1e-6 = 0, i.e. -1 normalised; sigma
sqrt(1e-6) = 1e-3 pixel), and a finite gradient; as S_k grows from 0 they move
continuously towards the part's true ones. Why these: a segmenter (or an attack on it)
often drives a part to nothing, and the head's BatchNorm and MLP must then see numbers
inside the ranges present parts span, with gradients that do not blow up - the features
of "a part of no size at the top-left corner". The original code's are not usable: its bbox
model divides by A_k unguarded (0 / 0: NaN), and its weighted model adds 1e-6 to every
row and column marginal, so an absent part's centre is sum_w 1e-6 w / 1e-6 =
W (W - 1) / 2 pixels (496 at W = 32: 30 normalised, with sigma_x 170 normalised), far
outside [-1, 1] and [0, 1]. robustops does not reproduce those.

Eager PyTorch materialises the softmax (B, K+1, H, W), two marginals and a dozen
reductions and their gradients; the fused op reads M once forward, keeping (B, 6K+1)
float64 moments and, when a gradient will be needed (grad mode on and M requiring
grad), the softmax S (in the compute dtype) for the backward, which then reads S (and M
in weighted mode, for f) and writes dL/dM: no exp over the channels again. Without a
saved S (``save_softmax=False`` on the op) the backward recomputes S from M.

Autograd, one path: the op's C++ autograd kernel saves M, the moments and S with
``save_for_backward`` (so ``torch.autograd.graph.saved_tensors_hooks``, offloading and
activation checkpointing see and manage them, and a retained graph differentiates again)
and its backward is the ``robustops::part_moments_backward`` op. When the node is S's
only owner (no saved-tensor hooks were active; the op then returns an empty third output
instead of S, so no caller holds it; float32/float64 logits) and the graph is not retained,
the backward is the explicit in-place op ``robustops::part_moments_backward_inplace``,
writing dL/dM over S, which the engine frees right after: one (B, K+1, H, W) buffer
fewer. retain_graph, create_graph and hooks take the out-of-place op. Callers that
manage memory by hand can call the in-place op on a softmax buffer they own.

Layouts and dtypes: any layout (the kernels read contiguous NCHW; others are copied
once); float32 and float64 compute in their own precision, float16 and bfloat16 in
float32; moments accumulate in float64 on CPU. First-order differentiable in M (the
backward op has no derivative of its own).

Layers: the ops ``robustops::part_moments`` (returns features, the moments and the
softmax, empty unless saved and not owned by the autograd node), ``robustops::part_moments_backward`` and
``robustops::part_moments_backward_inplace`` are declared in C++ (csrc/ops/part_moments.cpp,
with their argument checks and the autograd kernel) and run kernels registered per
dispatch key (csrc/cpu/part_moments.cpp, csrc/cuda/part_moments.cu; math in
kernels/part_moments.h). This file holds what Python does best beside them: the public
function (one call of ``torch.ops.robustops.part_moments``), the fake kernels, the
plain-PyTorch references (the oracle of every test and the fallback without the
extension), and the Triton backend (robustops/triton/part_moments.py) as
``robustops::part_moments_triton`` and its backward ops.
"""
from __future__ import annotations

import torch
from torch.compiler import is_compiling
from torch import Tensor

from ..arguments import require_bool, require_tensor
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


# ----------------------------------------------------------------------------- validation


def _validate(logits, weighted) -> None:
    """The checks of csrc/ops/part_moments.cpp, for the backends that do not run it
    (reference, triton), for the fake kernels and for non-tensor arguments (same
    messages)."""
    require_tensor("part_moments", "logits", logits, "a (B, K+1, H, W) tensor")
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
    require_bool(weighted, "weighted", where="part_moments")


def _validate_backward(op: str, grad: Tensor, logits: Tensor, stats: Tensor, softmax: Tensor,
                       in_place: bool) -> None:
    """The backward ops' checks of csrc/ops/part_moments.cpp (same messages)."""
    _validate(logits, False)
    b, k = logits.shape[0], logits.shape[1] - 1
    for name, t in (("grad", grad), ("stats", stats), ("softmax", softmax)):
        if t.device != logits.device:
            raise ValueError(f"{op}: {name} is on {t.device} but logits is on "
                             f"{logits.device}; move it with {name}.to(logits.device)")
    if not grad.is_floating_point() or tuple(grad.shape) != (b, k, NUM_FEATURES):
        raise ValueError(f"{op}: grad must be a floating (B, K, 5) = {(b, k, NUM_FEATURES)} "
                         f"tensor (the gradient of the features), got {tuple(grad.shape)} "
                         f"{grad.dtype}")
    if not stats.is_floating_point() or tuple(stats.shape) != (b, NUM_MOMENTS * k + 1):
        raise ValueError(f"{op}: stats must be the forward's (B, 6K+1) = "
                         f"{(b, NUM_MOMENTS * k + 1)} moments, got {tuple(stats.shape)} "
                         f"{stats.dtype}")
    if in_place:
        if (softmax.shape != logits.shape or softmax.dtype != logits.dtype
                or not softmax.is_contiguous()):
            raise ValueError(f"{op}: softmax must be a contiguous {tuple(logits.shape)} "
                             f"{logits.dtype} tensor, got {tuple(softmax.shape)} "
                             f"{softmax.dtype}")
    elif softmax.numel() > 0 and (softmax.shape != logits.shape
                                  or softmax.dtype != _opmath(logits.dtype)):
        raise ValueError(f"{op}: softmax must be empty or {tuple(logits.shape)} "
                         f"{_opmath(logits.dtype)} (the forward's), got "
                         f"{tuple(softmax.shape)} {softmax.dtype}")


# ----------------------------------------------------------------------------- fake kernels


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


def _fake(logits, weighted, save_softmax=False):
    _validate(logits, weighted)
    return _empty_outputs(logits, save_softmax)


def _fake_backward(grad, logits, stats, softmax, weighted):
    _validate_backward("part_moments_backward", grad, logits, stats, softmax, False)
    return torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)


def _fake_backward_inplace(grad, logits, stats, softmax, weighted):
    _validate_backward("part_moments_backward_inplace", grad, logits, stats, softmax, True)


_OP, _OP_EAGER = backend.native_op("part_moments", {
    "part_moments": _fake,
    "part_moments_backward": _fake_backward,
    "part_moments_backward_inplace": _fake_backward_inplace,
})


# ----------------------------------------------------------------------------- triton backend


@torch.library.custom_op("robustops::part_moments_triton", mutates_args=())
def _part_moments_triton(logits: Tensor, weighted: bool,
                         save_softmax: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """robustops::part_moments on the Triton kernels (robustops/triton/part_moments.py)."""
    from ..triton.part_moments import part_moments_triton
    _validate(logits, weighted)
    m = logits.contiguous()
    feats, stats, sm = _empty_outputs(m, save_softmax)
    if m.shape[0]:
        part_moments_triton(feats, stats, sm, m, weighted)
    return feats, stats, sm


def _triton_backward_into(op: str, out: Tensor, grad: Tensor, logits: Tensor, stats: Tensor,
                          softmax: Tensor, weighted: bool, in_place: bool) -> Tensor:
    from ..triton.part_moments import part_moments_backward_triton
    _validate_backward(op, grad, logits, stats, softmax, in_place)
    if logits.shape[0] == 0:
        return out
    # bbox mode with a saved softmax never reads the logits: no copy of a strided input.
    m = logits if softmax.numel() > 0 and not weighted else logits.contiguous()
    if in_place and weighted and m.untyped_storage().data_ptr() == out.untyped_storage().data_ptr():
        m = m.clone()
    part_moments_backward_triton(out, grad.to(torch.float64).contiguous(), m,
                                 stats.to(torch.float64).contiguous(), softmax.contiguous(),
                                 weighted)
    return out


@torch.library.custom_op("robustops::part_moments_backward_triton", mutates_args=())
def _part_moments_backward_triton(grad: Tensor, logits: Tensor, stats: Tensor, softmax: Tensor,
                                  weighted: bool) -> Tensor:
    """robustops::part_moments_backward on the Triton kernels."""
    out = torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)
    return _triton_backward_into("part_moments_backward", out, grad, logits, stats, softmax,
                                 weighted, False)


@torch.library.custom_op("robustops::part_moments_backward_inplace_triton",
                         mutates_args=("softmax",))
def _part_moments_backward_inplace_triton(grad: Tensor, logits: Tensor, stats: Tensor,
                                          softmax: Tensor, weighted: bool) -> None:
    """robustops::part_moments_backward_inplace on the Triton kernels."""
    _triton_backward_into("part_moments_backward_inplace", softmax, grad, logits, stats,
                          softmax, weighted, True)


_part_moments_triton.register_fake(_fake)
_part_moments_backward_triton.register_fake(_fake_backward)
_part_moments_backward_inplace_triton.register_fake(_fake_backward_inplace)


def _setup_context(ctx, inputs, output):
    # As the C++ autograd kernel: the logits, the moments and the softmax (empty unless
    # saved) through save_for_backward; only the features are differentiable.
    ctx.weighted = inputs[1]
    ctx.save_for_backward(inputs[0], output[1], output[2])
    ctx.mark_non_differentiable(output[1], output[2])
    ctx.set_materialize_grads(False)


def _backward(ctx, grad, _grad_stats, _grad_softmax):
    if grad is None:
        return None, None, None
    logits, stats, softmax = ctx.saved_tensors
    return _part_moments_backward_triton(grad, logits, stats, softmax, ctx.weighted), None, None


_part_moments_triton.register_autograd(_backward, setup_context=_setup_context)


# ----------------------------------------------------------------------------- public API


def part_moments(logits: Tensor, weighted: bool = False) -> Tensor:
    """Per-part bbox features of part logits, fused (see the module docstring).

    logits: (B, K+1, H, W) floating part logits, channel 0 the background, K >= 1.
    weighted: False -> features [mass, c_x, c_y, sigma_x, sigma_y] (the bbox head);
    True -> [score, c_x, c_y, sigma_x, sigma_y] with the foreground-weighted class score
    (the weighted-bbox head). Returns (B, K, 5) in logits' dtype, normalised: mass in
    [0, 1], centres in [-1, 1), sigmas in [0, 1]. Differentiable in logits (first order).
    NaN/Inf in logits propagate to the features of their image.
    """
    if weighted is not False and weighted is not True:  # the schema would take 0 / 1
        _validate(logits, weighted)
    try:
        name = backend.python_path(logits, OP, BACKENDS)
        # Save S for the backward only when there will be one (not under no_grad / eval).
        save = logits.requires_grad and torch.is_grad_enabled()
        if name is None:
            return (_OP if is_compiling() else _OP_EAGER)(logits, weighted, save)[0]
    except (TypeError, AttributeError, RuntimeError):
        _validate(logits, weighted)  # a clearer message than the schema's
        raise
    if name == "triton":
        return _part_moments_triton(logits, weighted, save)[0]
    _validate(logits, weighted)
    return part_moments_reference(logits, weighted)
