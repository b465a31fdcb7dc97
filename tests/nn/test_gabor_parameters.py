"""Gabor parameter sampling: VOneNet's generate_gabor_param by seed, and its distributions."""
import math

import numpy as np
import pytest
import torch

from robustops import gabor_bank
from robustops.nn.gabor_parameters import (N_BINS, N_JOINT_COUNTS, ORI_BINS, ORI_COUNTS,
                                           SF_BINS, SF_COUNTS, gabor_filter_parameters,
                                           sample_gabor_parameters)

stats = pytest.importorskip("scipy.stats")

N = 20000
P_MIN = 1e-3
KEYS = ("sf", "theta", "phase", "nx", "ny")


# ----------------------------------------------------------------------------- VOneNet transcription


def _vonenet_sample_dist(hist, bins, ns, scale="linear"):
    rand_sample = np.random.rand(ns)
    if scale == "linear":
        rand_sample = np.interp(rand_sample, np.hstack(([0], hist.cumsum())), bins)
    elif scale == "log2":
        rand_sample = np.interp(rand_sample, np.hstack(([0], hist.cumsum())), np.log2(bins))
        rand_sample = 2 ** rand_sample
    elif scale == "log10":
        rand_sample = np.interp(rand_sample, np.hstack(([0], hist.cumsum())), np.log10(bins))
        rand_sample = 10 ** rand_sample
    return rand_sample


def vonenet_generate_gabor_param(features, seed=0, rand_flag=False, sf_corr=0, sf_max=9,
                                 sf_min=0):
    """VOneNet's generate_gabor_param (dicarlolab/vonenet, vonenet/params.py), transcribed
    (prints dropped; its sf bins end at 8 cycles/deg in both modes). It seeds numpy's
    global generator: callers restore its state."""
    np.random.seed(seed)
    phase_bins = np.array([0, 360])
    phase_dist = np.array([1])
    if rand_flag:
        ori_bins = np.array([0, 180])
        ori_dist = np.array([1])
        nx_bins = np.array([0.1, 10 ** 0.2])
        nx_dist = np.array([1])
        ny_bins = np.array([0.1, 10 ** 0.2])
        ny_dist = np.array([1])
        sf_bins = np.array([0.5, 0.7, 1.0, 1.4, 2.0, 2.8, 4.0, 5.6, 8])
        sf_dist = np.array([1, 1, 1, 1, 1, 1, 1, 1])
        sfmax_ind = np.where(sf_bins < sf_max)[0][-1]
        sfmin_ind = np.where(sf_bins >= sf_min)[0][0]
        sf_bins = sf_bins[sfmin_ind:sfmax_ind + 1]
        sf_dist = sf_dist[sfmin_ind:sfmax_ind]
        sf_dist = sf_dist / sf_dist.sum()
    else:
        ori_bins = np.array([-22.5, 22.5, 67.5, 112.5, 157.5])
        ori_dist = np.array([66, 49, 77, 54])
        ori_dist = ori_dist / ori_dist.sum()
        cov_mat = np.array([[1, sf_corr], [sf_corr, 1]])
        nx_bins = np.logspace(-1, 0.2, 6, base=10)
        ny_bins = np.logspace(-1, 0.2, 6, base=10)
        n_joint_dist = np.array([[2., 0., 1., 0., 0.],
                                 [8., 9., 4., 1., 0.],
                                 [1., 2., 19., 17., 3.],
                                 [0., 0., 1., 7., 4.],
                                 [0., 0., 0., 0., 0.]])
        n_joint_dist = n_joint_dist / n_joint_dist.sum()
        nx_dist = n_joint_dist.sum(axis=1)
        nx_dist = nx_dist / nx_dist.sum()
        with np.errstate(invalid="ignore"):
            ny_dist_marg = n_joint_dist / n_joint_dist.sum(axis=1, keepdims=True)
        sf_bins = np.array([0.5, 0.7, 1.0, 1.4, 2.0, 2.8, 4.0, 5.6, 8])
        sf_dist = np.array([4, 4, 8, 25, 32, 26, 28, 12])
        sfmax_ind = np.where(sf_bins <= sf_max)[0][-1]
        sfmin_ind = np.where(sf_bins >= sf_min)[0][0]
        sf_bins = sf_bins[sfmin_ind:sfmax_ind + 1]
        sf_dist = sf_dist[sfmin_ind:sfmax_ind]
        sf_dist = sf_dist / sf_dist.sum()

    phase = _vonenet_sample_dist(phase_dist, phase_bins, features)
    ori = _vonenet_sample_dist(ori_dist, ori_bins, features)
    ori[ori < 0] = ori[ori < 0] + 180
    if rand_flag:
        sf = _vonenet_sample_dist(sf_dist, sf_bins, features, scale="log2")
        nx = _vonenet_sample_dist(nx_dist, nx_bins, features, scale="log10")
        ny = _vonenet_sample_dist(ny_dist, ny_bins, features, scale="log10")
    else:
        samps = np.random.multivariate_normal([0, 0], cov_mat, features)
        samps_cdf = stats.norm.cdf(samps)
        nx = np.interp(samps_cdf[:, 0], np.hstack(([0], nx_dist.cumsum())), np.log10(nx_bins))
        nx = 10 ** nx
        ny_samp = np.random.rand(features)
        ny = np.zeros(features)
        for samp_ind, nx_samp in enumerate(nx):
            bin_id = np.argwhere(nx_bins < nx_samp)[-1]
            ny[samp_ind] = np.interp(ny_samp[samp_ind],
                                     np.hstack(([0], ny_dist_marg[bin_id, :].cumsum())),
                                     np.log10(ny_bins))
        ny = 10 ** ny
        sf = np.interp(samps_cdf[:, 1], np.hstack(([0], sf_dist.cumsum())), np.log2(sf_bins))
        sf = 2 ** sf
    return sf, ori, phase, nx, ny


@pytest.mark.parametrize("kw", [
    dict(), dict(seed=7, sf_corr=0.0), dict(seed=3, sf_min=1.0, sf_max=5.6),
    dict(seed=11, sf_max=12.0), dict(seed=12, sf_max=11.2), dict(seed=2, rand_param=True),
    dict(seed=5, rand_param=True, sf_min=0.9, sf_max=8.0),
    dict(seed=6, rand_param=True, sf_max=20.0), dict(seed=8, sf_min=2.0, sf_max=100.0),
], ids=str)
def test_matches_vonenet_generate_gabor_param(kw):
    kw = {"seed": 0, "rand_param": False, "sf_corr": 0.75, "sf_min": 0.0, "sf_max": 9.0, **kw}
    ours = sample_gabor_parameters(500, **kw)
    state = np.random.get_state()
    try:
        theirs = vonenet_generate_gabor_param(500, kw["seed"], kw["rand_param"], kw["sf_corr"],
                                              kw["sf_max"], kw["sf_min"])
    finally:
        np.random.set_state(state)
    for key, ref in zip(KEYS, theirs):
        assert ours[key].dtype == torch.float64 and ours[key].shape == (500,)
        # Only the normal CDF differs (torch's ndtr vs scipy's): ~1e-16 relative.
        np.testing.assert_allclose(ours[key].numpy(), ref, rtol=1e-12, atol=0, err_msg=key)


# ----------------------------------------------------------------------------- determinism


def test_spatial_frequencies_stop_at_8_as_vonenet():
    # VOneNet's bins end at 8 cycles/deg: a larger sf_max (11.2 and beyond) never samples
    # above 8, and gives the same draws as sf_max = 9 (the same eight bins).
    assert SF_BINS[-1] == 8 and len(SF_COUNTS) == len(SF_BINS) - 1 == 8
    for rand in (False, True):
        big = sample_gabor_parameters(4000, seed=3, sf_max=12.0, rand_param=rand)["sf"]
        assert float(big.max()) <= 8.0
        assert torch.equal(big, sample_gabor_parameters(4000, seed=3, sf_max=9.0,
                                                        rand_param=rand)["sf"])
    with pytest.raises(ValueError, match="no whole spatial-frequency bin"):
        sample_gabor_parameters(10, sf_min=8.5, sf_max=12.0)


def test_reproducible_by_seed_and_leaves_global_rngs_alone():
    np_state, torch_state = np.random.get_state(), torch.get_rng_state()
    a = sample_gabor_parameters(300, seed=4)
    b = sample_gabor_parameters(300, seed=4)
    c = sample_gabor_parameters(300, seed=5)
    assert all(torch.equal(a[k], b[k]) for k in KEYS)
    assert all(not torch.equal(a[k], c[k]) for k in KEYS)
    assert torch.equal(torch.get_rng_state(), torch_state)
    after = np.random.get_state()
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1])
    assert after[2:] == np_state[2:]
    # A prefix of a larger draw is not promised (the copula draws pairs), but n = 0 works.
    assert all(sample_gabor_parameters(0)[k].shape == (0,) for k in KEYS)


# ----------------------------------------------------------------------------- distributions


def _chisquare(observed, probs):
    observed = np.asarray(observed, dtype=np.float64)
    expected = np.asarray(probs, dtype=np.float64) / np.sum(probs) * observed.sum()
    return stats.chisquare(observed, expected).pvalue


def test_orientation_histogram():
    theta = sample_gabor_parameters(N, seed=21)["theta"].numpy()
    assert theta.min() >= 0 and theta.max() < 180
    unwrapped = np.where(theta >= 157.5, theta - 180, theta)  # back to VOneNet's bins
    observed, _ = np.histogram(unwrapped, ORI_BINS)
    assert observed.sum() == N
    assert _chisquare(observed, ORI_COUNTS) > P_MIN
    # Uniform inside a bin: the first half of each bin holds half its mass.
    halves, _ = np.histogram(unwrapped, np.sort(np.r_[ORI_BINS, ORI_BINS[:-1] + 22.5]))
    assert _chisquare(halves, np.repeat(ORI_COUNTS, 2)) > P_MIN


@pytest.mark.parametrize("sf_min,sf_max,lo,hi", [(0.0, 9.0, 0, 8), (1.0, 5.6, 2, 7),
                                                 (0.6, 3.0, 1, 5), (0.0, 100.0, 0, 8)])
def test_spatial_frequency_histogram_and_truncation(sf_min, sf_max, lo, hi):
    sf = sample_gabor_parameters(N, seed=22, sf_min=sf_min, sf_max=sf_max)["sf"].numpy()
    assert sf.min() >= SF_BINS[lo] >= sf_min and sf.max() <= SF_BINS[hi] <= sf_max
    observed, _ = np.histogram(sf, SF_BINS[lo:hi + 1])
    assert observed.sum() == N
    assert _chisquare(observed, SF_COUNTS[lo:hi]) > P_MIN
    # Log2-uniform inside a bin: split each bin at its log2 midpoint.
    edges = SF_BINS[lo:hi + 1]
    mids = 2 ** ((np.log2(edges[:-1]) + np.log2(edges[1:])) / 2)
    halves, _ = np.histogram(sf, np.sort(np.r_[edges, mids]))
    assert _chisquare(halves, np.repeat(SF_COUNTS[lo:hi], 2)) > P_MIN


def test_phase_uniform():
    phase = sample_gabor_parameters(N, seed=23)["phase"].numpy()
    assert phase.min() >= 0 and phase.max() < 360
    assert stats.kstest(phase / 360, "uniform").pvalue > P_MIN


@pytest.mark.parametrize("rho", [0.75, 0.0, -0.5])
def test_copula_rank_correlation(rho):
    p = sample_gabor_parameters(N, seed=24, sf_corr=rho)
    r = stats.spearmanr(np.log(p["nx"].numpy()), np.log(p["sf"].numpy())).statistic
    # A Gaussian copula's Spearman rho; the marginals are monotone maps of the normals.
    expected = 6 / math.pi * math.asin(rho / 2)
    assert abs(r - expected) < 0.02, (r, expected)


def test_envelope_joint_histogram():
    p = sample_gabor_parameters(N, seed=25)
    nx, ny = p["nx"].numpy(), p["ny"].numpy()
    assert nx.min() >= N_BINS[0] and nx.max() <= N_BINS[-2]  # the last nx row is empty
    assert ny.min() >= N_BINS[0] and ny.max() <= N_BINS[-1]
    nx_obs, _ = np.histogram(nx, N_BINS)
    assert nx_obs[4] == 0 and _chisquare(nx_obs[:4], N_JOINT_COUNTS.sum(1)[:4]) > P_MIN
    nx_bin = np.searchsorted(N_BINS, nx) - 1
    for b in range(4):
        row = N_JOINT_COUNTS[b]
        obs, _ = np.histogram(ny[nx_bin == b], N_BINS)
        assert obs[row == 0].sum() == 0, (b, obs)  # never in a bin the row leaves empty
        if (row > 0).sum() > 1:
            assert _chisquare(obs[row > 0], row[row > 0]) > P_MIN, (b, obs)


def test_rand_param_mode_ranges():
    p = sample_gabor_parameters(N, seed=26, rand_param=True)
    theta, sf, nx, ny = (p[k].numpy() for k in ("theta", "sf", "nx", "ny"))
    assert theta.min() >= 0 and theta.max() <= 180
    assert stats.kstest(theta / 180, "uniform").pvalue > P_MIN
    lo, hi = math.log10(0.1), 0.2
    for v in (nx, ny):
        assert v.min() >= 0.1 and v.max() <= 10 ** 0.2
        assert stats.kstest((np.log10(v) - lo) / (hi - lo), "uniform").pvalue > P_MIN
    # sf_max = 9: bins with edges < 9 (0.5 .. 8), equally likely.
    assert sf.min() >= 0.5 and sf.max() <= 8
    observed, _ = np.histogram(sf, SF_BINS[:9])
    assert _chisquare(observed, np.ones(8)) > P_MIN
    assert abs(stats.spearmanr(nx, sf).statistic) < 0.05  # no copula here
    q = sample_gabor_parameters(2000, seed=26, rand_param=True, sf_min=1.0, sf_max=4.0)["sf"]
    assert q.min() >= 1.0 and q.max() <= 2.8  # edges < 4 strictly, as VOneNet


# ----------------------------------------------------------------------------- units and errors


def test_filter_parameters_units_and_bank():
    p = sample_gabor_parameters(64, seed=27)
    q = gabor_filter_parameters(p, image_size=224, visual_degrees=8)
    assert set(q) == {"frequency", "sigma_x", "sigma_y", "theta", "phase"}
    torch.testing.assert_close(q["frequency"], p["sf"] / 28)
    torch.testing.assert_close(q["sigma_x"] * q["frequency"], p["nx"])
    torch.testing.assert_close(q["sigma_y"] * q["frequency"], p["ny"])
    torch.testing.assert_close(q["theta"], torch.deg2rad(p["theta"]))
    torch.testing.assert_close(q["phase"], torch.deg2rad(p["phase"]))
    assert all(v.dtype == torch.float64 and v.shape == (64,) for v in q.values())
    bank = gabor_bank(**q, ksize=25)
    assert bank.shape == (64, 25, 25) and torch.isfinite(bank).all()
    q32 = gabor_filter_parameters({k: v.float() for k, v in p.items()}, 64, 4)
    assert q32["frequency"].dtype == torch.float32
    torch.testing.assert_close(q32["frequency"], (p["sf"] / 16).float())


@pytest.mark.parametrize("kw,match", [
    (dict(n=-1), "n must be an int >= 0"),
    (dict(seed=-1), "seed must be an int"),
    (dict(sf_corr=1.5), r"sf_corr is a correlation, it must be in \[-1, 1\]"),
    (dict(sf_corr=float("nan")), "sf_corr must be a finite number"),
    (dict(sf_min=3.0, sf_max=2.0), "sf_min <= sf_max"),
    (dict(sf_min=2.1, sf_max=2.7), "no whole spatial-frequency bin"),
    (dict(sf_max=0.4), "no whole spatial-frequency bin"),
    (dict(sf_min=0.0, sf_max=0.7, rand_param=True), "no whole spatial-frequency bin"),
])
def test_sampling_bad_arguments(kw, match):
    kw = {"n": 10, **kw}
    with pytest.raises(ValueError, match=match):
        sample_gabor_parameters(kw.pop("n"), **kw)


@pytest.mark.parametrize("kw,match", [
    (dict(n=2.0), r"sample_gabor_parameters: n must be an int >= 0, got 2.0 \(float\)"),
    (dict(seed=True), r"seed must be an int in \[0, 2\*\*32\), got True \(bool\)"),
    (dict(sf_min="0.5"), "sf_min must be a finite number, got '0.5' \\(str\\)"),
])
def test_sampling_arguments_of_a_wrong_type(kw, match):
    kw = {"n": 10, **kw}
    with pytest.raises(TypeError, match=match):
        sample_gabor_parameters(kw.pop("n"), **kw)


def test_filter_parameters_bad_arguments():
    p = sample_gabor_parameters(4)
    with pytest.raises(ValueError, match=r"lacks \['ny'\]"):
        gabor_filter_parameters({k: v for k, v in p.items() if k != "ny"})
    with pytest.raises(ValueError, match="visual_degrees must be a number > 0"):
        gabor_filter_parameters(p, visual_degrees=0)
