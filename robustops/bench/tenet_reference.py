"""The TENET reference procedure in plain numpy, per sample: the oracle of the tests and the
baseline of the benchmark (METHODS.md section 2).

A transcription of the paper's code (LinusWu/TENET_Training: CFG/Group.py
``KMeans_GPU_FAST``, TENET/Tenet.py ``get_masktensor``, CFG/Orthogonal_loss.py) with its
per-sample and per-group Python loops kept, and torch replaced by numpy:

- k-means over the C channel vectors of one sample (each a vector of H*W values): assign
  every channel to its nearest centre (squared Euclidean, first centre on ties); then for
  each group k in order, its centre becomes the mean of its channels and is snapped to the
  nearest real channel not already taken by groups 0..k-1 of this iteration; stop when
  (sum over groups of the snapped centres' shift) ** 2 < shift_threshold or after max_iter
  iterations. The returned assignment is the one computed at the start of the last
  iteration (as the paper's code returns it). An empty group's mean is NaN (numpy's mean
  of nothing); numpy's argmin returns the first NaN, so the paper's code re-seeds an empty
  group at the lowest-index channel not yet taken: kept here as it is.
- mask: per group, w_c = mean_hw G[c], s = sum w_c; s <= 0 -> mask 1; else
  m = sum_c w_c F[c] (H, W), z = (m - mean m) / (std m + 1e-8) (population std, numpy's
  default), mask = 1 / (1 + exp(z)); every channel of the group gets it.
- orthogonality loss: mu_g = mean of the group's channels; per sample
  sum_{i<j} |<mu_i, mu_j>| over non-empty groups / (K'(K'-1)/2, or 1 when K' < 2); mean
  over the batch.

Slow by design (that is what robustops' batched ops replace); use small inputs in tests.
numpy sums in its own (pairwise) order, so exact-arithmetic ties on maps of 8 values or
more can break otherwise than in the paper's torch code; the torch transcription that
matches it tie for tie is the oracle of tests/ops/test_channel_kmeans_fidelity.py.
"""
from __future__ import annotations

import numpy as np

__all__ = ["kmeans_sample", "kmeans_batch", "inhibition_mask", "orthogonality_loss",
           "inhibition_step", "kmeans_objective"]


def _pairwise_sq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, m) squared distances by broadcasting, as the paper's pairwise_distance."""
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=-1)


def kmeans_sample(x: np.ndarray, init: np.ndarray, max_iter: int = 50,
                  shift_threshold: float = 1e-4):
    """One sample's k-means. x: (C, N) channel vectors; init: (K,) distinct channel indices.

    Returns (assignment (C,) int64, medoids (K,) int64 channel indices, iterations run).
    """
    x = np.asarray(x)
    init = np.asarray(init, dtype=np.int64)
    k_groups = init.shape[0]
    centers = x[init].copy()
    points = init.copy()
    iteration = 0
    while True:
        assign = np.argmin(_pairwise_sq(x, centers), axis=1)
        previous = centers.copy()
        points = np.empty(k_groups, dtype=np.int64)
        for k in range(k_groups):
            selected = x[assign == k]
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = selected.mean(axis=0) if selected.shape[0] else \
                    np.full(x.shape[1], np.nan, dtype=x.dtype)
            dist = _pairwise_sq(x, mean[None, :])[:, 0]
            pos = int(np.argmin(dist))
            while pos in points[:k]:
                dist[pos] = np.inf
                pos = int(np.argmin(dist))
            points[k] = pos
        centers = x[points]
        shift = np.sqrt(((centers - previous) ** 2).sum(axis=1)).sum()
        iteration += 1
        if shift ** 2 < shift_threshold or iteration >= max_iter:
            return assign.astype(np.int64), points, iteration


def kmeans_batch(f: np.ndarray, init: np.ndarray, max_iter: int = 50,
                 shift_threshold: float = 1e-4):
    """k-means of every sample of f (B, C, H, W) from init (B, K): ((B, C), (B, K), (B,))."""
    f = np.asarray(f)
    b = f.shape[0]
    x = f.reshape(b, f.shape[1], -1)
    out = [kmeans_sample(x[i], init[i], max_iter, shift_threshold) for i in range(b)]
    return (np.stack([o[0] for o in out]), np.stack([o[1] for o in out]),
            np.array([o[2] for o in out]))


def kmeans_objective(f: np.ndarray, assignment: np.ndarray) -> np.ndarray:
    """(B,) within-group sum of squared distances to the group means (float64)."""
    f = np.asarray(f, dtype=np.float64)
    b, c = f.shape[:2]
    x = f.reshape(b, c, -1)
    out = np.zeros(b)
    for i in range(b):
        for k in np.unique(assignment[i]):
            sel = x[i][assignment[i] == k]
            out[i] += ((sel - sel.mean(axis=0)) ** 2).sum()
    return out


def inhibition_mask(f: np.ndarray, g: np.ndarray, assignment: np.ndarray,
                    num_groups: int) -> np.ndarray:
    """The paper's get_masktensor: the (B, C, H, W) mask (f's dtype) from F, G, assignment."""
    f, g = np.asarray(f), np.asarray(g)
    b, c, h, w = f.shape
    # The paper stores the mask in float32 (its features are float32); f.dtype here, so a
    # float64 test compares at float64 precision.
    mask = np.zeros((b, c, h, w), dtype=f.dtype)
    for i in range(b):
        for k in range(num_groups):
            selected = np.where(assignment[i] == k)
            weights = g[i][selected].mean(axis=(1, 2))
            if weights.sum() <= 0:
                group_mask = 1.0
            else:
                m = f[i][selected].transpose(1, 2, 0).dot(weights)
                m = (m - np.mean(m)) / (np.std(m) + 1e-8)
                group_mask = 1.0 / (1.0 + np.exp(m))
            mask[i][selected] = group_mask
    return mask


def orthogonality_loss(f: np.ndarray, assignment: np.ndarray, num_groups: int) -> float:
    """The paper's OrthogonalLoss on F (B, C, H, W) and the assignment (B, C)."""
    f = np.asarray(f)
    b = f.shape[0]
    total = 0.0
    for i in range(b):
        means = []
        for k in range(num_groups):
            sel = np.where(assignment[i] == k)[0]
            if sel.shape[0] == 0:
                continue  # an empty group: left out, and K' counts the rest
            means.append(f[i][sel].mean(axis=0).reshape(-1))
        stack = np.stack(means)
        gram = np.abs(stack @ stack.T)
        valid = len(means)
        pairs = valid * (valid - 1) / 2 if valid > 1 else 1
        total += np.triu(gram, k=1).sum() / pairs
    return total / b


def inhibition_step(f: np.ndarray, g: np.ndarray, init: np.ndarray, max_iter: int = 50,
                    shift_threshold: float = 1e-4):
    """k-means then the mask, the paper's per-sample way: (mask (B,C,H,W), assignment (B,C))."""
    assignment, _, _ = kmeans_batch(f, init, max_iter, shift_threshold)
    return inhibition_mask(f, g, assignment, init.shape[1]), assignment
