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
reductions and their gradients; the fused op reads M once forward (keeping (B, 6K+1)
float64 moments for the backward) and once backward, writing only dL/dM.

Layouts and dtypes: any layout (the kernels read contiguous NCHW; others are copied
once); float32 and float64 compute in their own precision, float16 and bfloat16 in
float32; moments accumulate in float64 on CPU. First-order differentiable in M (the
backward op has no derivative of its own).

Layers: custom ops ``robustops::part_moments`` (returns features and the moments) and
``robustops::part_moments_backward``, the plain-PyTorch references, fake kernels,
autograd and validation here; kernels in kernels/part_moments.h,
csrc/cpu/part_moments.cpp, csrc/cuda/part_moments.cu and robustops/triton/part_moments.py.
"""
from __future__ import annotations

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
                                    weighted: bool = False) -> Tensor:
    """Analytic dL/dlogits (B, K+1, H, W) from dL/dfeatures (B, K, 5) and the moments.

    The per-pixel gradient wrt S_k is a quadratic in the centred coordinates, then the
    softmax and (weighted) sigmoid Jacobians apply (kernels/part_moments.h).
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
    s = torch.softmax(m, 1)
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


def _empty_outputs(logits: Tensor):
    b, c = logits.shape[:2]
    feats = torch.empty((b, c - 1, NUM_FEATURES), dtype=logits.dtype, device=logits.device)
    stats = torch.empty((b, NUM_MOMENTS * (c - 1) + 1), dtype=torch.float64,
                        device=logits.device)
    return feats, stats


@torch.library.custom_op("robustops::part_moments", mutates_args=())
def _part_moments_op(logits: Tensor, weighted: bool) -> tuple[Tensor, Tensor]:
    name, m = _kernel(logits)
    if name == "reference":
        return (part_moments_reference(logits, weighted),
                part_moments_stats_reference(logits, weighted))
    feats, stats = _empty_outputs(m)
    if m.shape[0] == 0:
        return feats, stats
    if name == "triton":
        from ..triton.part_moments import part_moments_triton
        part_moments_triton(feats, stats, m, weighted)
    else:
        backend.extension().part_moments(feats, stats, m, weighted)
    return feats, stats


@_part_moments_op.register_fake
def _(logits, weighted):
    b, c = logits.shape[:2]
    return (logits.new_empty((b, c - 1, NUM_FEATURES)),
            logits.new_empty((b, NUM_MOMENTS * (c - 1) + 1), dtype=torch.float64))


@torch.library.custom_op("robustops::part_moments_backward", mutates_args=())
def _part_moments_backward_op(grad: Tensor, logits: Tensor, stats: Tensor,
                              weighted: bool) -> Tensor:
    name, m = _kernel(logits)
    if name == "reference":
        return part_moments_backward_reference(grad, logits, stats, weighted)
    out = torch.empty(m.shape, dtype=m.dtype, device=m.device)
    if m.shape[0] == 0:
        return out
    g = grad.to(torch.float64).contiguous()
    st = stats.to(torch.float64).contiguous()
    if name == "triton":
        from ..triton.part_moments import part_moments_backward_triton
        part_moments_backward_triton(out, g, m, st, weighted)
    else:
        backend.extension().part_moments_backward(out, g, m, st, weighted)
    return out


@_part_moments_backward_op.register_fake
def _(grad, logits, stats, weighted):
    return torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)


def _setup_context(ctx, inputs, output):
    logits, weighted = inputs
    ctx.weighted = weighted
    ctx.save_for_backward(logits, output[1])
    ctx.mark_non_differentiable(output[1])


def _backward(ctx, grad, _grad_stats):
    logits, stats = ctx.saved_tensors
    return _part_moments_backward_op(grad, logits, stats, ctx.weighted), None


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
    return _part_moments_op(logits, weighted)[0]
