"""Gabor parameters of a VOneNet V1 front-end: biological sampling and unit conversion.

``sample_gabor_parameters(n, seed=...)`` draws n channels' parameters from the
distributions of VOneNet's ``generate_gabor_param`` (dicarlolab/vonenet,
vonenet/params.py; METHODS.md section 3):

- phase: uniform in [0, 360) deg;
- orientation theta: histogram on bins [-22.5, 22.5, 67.5, 112.5, 157.5] deg with
  counts [66, 49, 77, 54] (De Valois 1982a), uniform inside a bin, negatives + 180,
  so theta is in [0, 180);
- envelope widths nx, ny (in cycles of the carrier): a 5 x 5 joint histogram on
  bin edges logspace(-1, 0.2, 6) (Ringach 2002b), log-uniform inside a bin; ny is
  drawn from the row of nx's bin;
- spatial frequency sf (cycles/deg): histogram on bins [0.5, 0.7, 1, 1.4, 2, 2.8,
  4, 5.6, 8] with counts [4, 4, 8, 25, 32, 26, 28, 12] (De Valois 1982b, as
  VOneNet tabulates it), interpolated on a log2 scale; only whole bins whose edges
  lie in [sf_min, sf_max] are kept, so every sf is in [sf_min, sf_max]. The bins
  end at 8 cycles/deg, as VOneNet's: any sf_max >= 8 (the default 9 included)
  keeps all eight bins and never samples above 8;
- nx and sf are coupled by a Gaussian copula with correlation sf_corr (Schiller
  1976): one bivariate normal draw per channel, mapped through each marginal's
  inverse CDF.

``rand_param=True`` is VOneNet's control: theta uniform in [0, 180], nx and ny
log-uniform in [0.1, 10^0.2], sf equally likely in each log2 bin of the kept
range (VOneNet keeps the bins with edges < sf_max here, strictly; again up to 8),
no copula.

The draws use a private ``numpy.random.RandomState(seed)`` (the global numpy and
torch generators are untouched) in the same order as VOneNet's, so a seed gives
VOneNet's parameters for that ``gabor_seed`` (to ~1e-15: the normal CDF comes
from torch instead of scipy).

``gabor_filter_parameters(params)`` converts to the units of
``robustops.gabor_bank``: ppd = image_size / visual_degrees pixels per degree,
frequency = sf / ppd cycles/pixel, sigma_x = nx / frequency and sigma_y =
ny / frequency pixels, theta and phase in radians.
"""
from __future__ import annotations

import math
from typing import Dict

import numpy as np
import torch
from torch import Tensor

from ..arguments import require_int, require_real

__all__ = ["sample_gabor_parameters", "gabor_filter_parameters", "ORI_BINS", "ORI_COUNTS",
           "N_BINS", "N_JOINT_COUNTS", "SF_BINS", "SF_COUNTS"]

# De Valois 1982a: preferred orientation (deg).
ORI_BINS = np.array([-22.5, 22.5, 67.5, 112.5, 157.5])
ORI_COUNTS = np.array([66, 49, 77, 54])
# Ringach 2002b: joint histogram of (nx, ny), rows: nx bin, columns: ny bin.
N_BINS = np.logspace(-1, 0.2, 6, base=10)
N_JOINT_COUNTS = np.array([[2., 0., 1., 0., 0.],
                           [8., 9., 4., 1., 0.],
                           [1., 2., 19., 17., 3.],
                           [0., 0., 1., 7., 4.],
                           [0., 0., 0., 0., 0.]])
# De Valois 1982b: peak spatial frequency (cycles/deg), the bins and counts VOneNet
# uses; they end at 8 cycles/deg.
SF_BINS = np.array([0.5, 0.7, 1.0, 1.4, 2.0, 2.8, 4.0, 5.6, 8])
SF_COUNTS = np.array([4, 4, 8, 25, 32, 26, 28, 12])

_KEYS = ("sf", "theta", "phase", "nx", "ny")


def _sample_dist(rs: np.random.RandomState, hist, bins, n: int, scale: str = "linear"):
    """Inverse-CDF draw from a histogram (VOneNet's sample_dist): uniform inside a bin,
    on a linear, log2 or log10 axis."""
    cdf = np.hstack(([0], hist.cumsum()))
    u = rs.rand(n)
    if scale == "linear":
        return np.interp(u, cdf, bins)
    if scale == "log2":
        return 2 ** np.interp(u, cdf, np.log2(bins))
    return 10 ** np.interp(u, cdf, np.log10(bins))


def _sf_bins(sf_min: float, sf_max: float, strict_max: bool):
    """The bin edges kept by [sf_min, sf_max] (whole bins), and their bin indices."""
    below = SF_BINS < sf_max if strict_max else SF_BINS <= sf_max
    hi_idx = np.where(below)[0]
    lo_idx = np.where(SF_BINS >= sf_min)[0]
    if hi_idx.size == 0 or lo_idx.size == 0 or hi_idx[-1] <= lo_idx[0]:
        raise ValueError(
            f"sample_gabor_parameters: no whole spatial-frequency bin lies in [sf_min, sf_max] = "
            f"[{sf_min}, {sf_max}] (bin edges {SF_BINS.tolist()} cycles/deg; "
            f"{'rand_param keeps edges < sf_max' if strict_max else 'edges within the range are kept'})")
    return lo_idx[0], hi_idx[-1]


def _check_args(n, seed, sf_corr, sf_min, sf_max) -> None:
    where = "sample_gabor_parameters"
    require_int(n, "n", where=where, minimum=0)
    require_int(seed, "seed", where=where, minimum=0, maximum=2 ** 32 - 1,
                what="an int in [0, 2**32)")
    for name, v in (("sf_corr", sf_corr), ("sf_min", sf_min), ("sf_max", sf_max)):
        require_real(v, name, where=where)
    if not -1.0 <= sf_corr <= 1.0:
        raise ValueError(f"sample_gabor_parameters: sf_corr is a correlation, it must be in "
                         f"[-1, 1], got {sf_corr}")
    if sf_min > sf_max:
        raise ValueError(f"sample_gabor_parameters: need sf_min <= sf_max, got {sf_min} > {sf_max}")


def sample_gabor_parameters(n: int, *, seed: int = 0, rand_param: bool = False,
                            sf_corr: float = 0.75, sf_min: float = 0.0,
                            sf_max: float = 9.0) -> Dict[str, Tensor]:
    """Gabor parameters of n V1 channels, VOneNet's ``generate_gabor_param`` by seed.

    Returns a dict of (n,) float64 CPU tensors: ``sf`` (cycles/deg), ``theta`` (deg, in
    [0, 180)), ``phase`` (deg, in [0, 360)), ``nx`` and ``ny`` (envelope widths in cycles
    of the carrier). seed: int in [0, 2**32); rand_param: VOneNet's uniform/log-uniform
    control; sf_corr: copula correlation of nx and sf (VOneNet's models use 0.75);
    sf_min, sf_max (cycles/deg): whole sf bins within the range are kept, up to 8
    (VOneNet's ``VOneNet()`` builder defaults to sf_max=9; its training script, train.py,
    passes 6, VOneBlock's default here). Deterministic by seed; no global RNG touched.
    """
    _check_args(n, seed, sf_corr, sf_min, sf_max)
    rs = np.random.RandomState(seed)  # private; same draw order as VOneNet's np.random.seed
    phase = _sample_dist(rs, np.array([1]), np.array([0, 360]), n)
    if rand_param:
        ori_counts, ori_bins = np.array([1]), np.array([0, 180])
    else:
        ori_counts, ori_bins = ORI_COUNTS / ORI_COUNTS.sum(), ORI_BINS
    theta = _sample_dist(rs, ori_counts, ori_bins, n)
    theta[theta < 0] += 180

    if rand_param:
        lo, hi = _sf_bins(sf_min, sf_max, strict_max=True)
        sf_hist = np.ones(hi - lo)
        sf = _sample_dist(rs, sf_hist / sf_hist.sum(), SF_BINS[lo:hi + 1], n, scale="log2")
        n_edges = np.array([0.1, 10 ** 0.2])
        nx = _sample_dist(rs, np.array([1]), n_edges, n, scale="log10")
        ny = _sample_dist(rs, np.array([1]), n_edges, n, scale="log10")
    else:
        lo, hi = _sf_bins(sf_min, sf_max, strict_max=False)
        sf_hist = SF_COUNTS[lo:hi]
        sf_cdf = np.hstack(([0], (sf_hist / sf_hist.sum()).cumsum()))
        joint = N_JOINT_COUNTS / N_JOINT_COUNTS.sum()
        nx_hist = joint.sum(axis=1)
        nx_cdf = np.hstack(([0], (nx_hist / nx_hist.sum()).cumsum()))
        with np.errstate(invalid="ignore"):  # the empty last row: nx never lands in it
            ny_given_nx = joint / joint.sum(axis=1, keepdims=True)

        # The copula: correlated normals -> uniforms -> each marginal's inverse CDF.
        z = rs.multivariate_normal([0, 0], np.array([[1, sf_corr], [sf_corr, 1]]), n)
        u = torch.special.ndtr(torch.from_numpy(np.ascontiguousarray(z))).numpy()
        nx = 10 ** np.interp(u[:, 0], nx_cdf, np.log10(N_BINS))
        ny_u = rs.rand(n)
        # ny from the row of nx's bin: the last edge strictly below nx, as VOneNet.
        nx_bin = np.searchsorted(N_BINS, nx, side="left") - 1
        log_ny = np.zeros(n)
        for b in np.unique(nx_bin):
            rows = nx_bin == b
            log_ny[rows] = np.interp(ny_u[rows], np.hstack(([0], ny_given_nx[b].cumsum())),
                                     np.log10(N_BINS))
        ny = 10 ** log_ny
        sf = 2 ** np.interp(u[:, 1], sf_cdf, np.log2(SF_BINS[lo:hi + 1]))

    values = dict(sf=sf, theta=theta, phase=phase, nx=nx, ny=ny)
    return {k: torch.as_tensor(np.asarray(values[k], dtype=np.float64)).clone() for k in _KEYS}


def gabor_filter_parameters(params: Dict[str, Tensor], image_size: int = 224,
                            visual_degrees: float = 8) -> Dict[str, Tensor]:
    """Biological parameters -> the arguments of ``robustops.gabor_bank``.

    params: a dict with (n,) tensors ``sf`` (cycles/deg), ``theta``, ``phase`` (deg),
    ``nx``, ``ny`` (cycles), as from ``sample_gabor_parameters``. image_size (pixels)
    spans visual_degrees (deg): ppd = image_size / visual_degrees. Returns (n,) tensors
    (params' dtype and device) ``frequency`` = sf / ppd (cycles/pixel), ``sigma_x`` =
    nx / frequency, ``sigma_y`` = ny / frequency (pixels), ``theta`` and ``phase`` in
    radians, so ``gabor_bank(**gabor_filter_parameters(p), ksize=25)`` builds the bank.
    """
    missing = [k for k in _KEYS if k not in params]
    if missing:
        raise ValueError(f"gabor_filter_parameters: params lacks {missing}; expected the keys "
                         f"{list(_KEYS)} of sample_gabor_parameters")
    for name, v in (("image_size", image_size), ("visual_degrees", visual_degrees)):
        require_real(v, name, where="gabor_filter_parameters", low=0, low_open=True,
                     what="a number > 0")
    p = {k: torch.as_tensor(params[k]) for k in _KEYS}
    # VOneNet's conversion, in its order of operations.
    ppd = image_size / visual_degrees
    frequency = p["sf"] / ppd
    return dict(frequency=frequency, sigma_x=p["nx"] / frequency, sigma_y=p["ny"] / frequency,
                theta=p["theta"] / 180 * math.pi, phase=p["phase"] / 180 * math.pi)
