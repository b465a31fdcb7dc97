// channel_kmeans: the per-element math of TENET's channel k-means (METHODS.md section 2).
//
// Per sample, the C channel vectors x_c (H*W values each) are grouped around K
// medoids (centres that are always real channels). One iteration:
//   d[c][k]  = sum_i (x_c[i] - x_{M_k}[i])^2                        (km_sq_term)
//   a[c]     = the first k minimising d[c][k]
//   mean_k   = mean of the channels with a[c] = k
//   key_k[c] = sum_i (x_c[i] - mean_k[i])^2 (km_sq_term), or for an empty group 0 (the
//              paper's NaN mean: the first free channel) or, reseed_farthest,
//              -min_k d[c][k] (the free channel farthest from its own centre)
//   M_k      = the first channel minimising key_k over the channels not taken by
//              groups 0..k-1 of this iteration (distinct medoids, as the paper's code)
//   shift    = sum_k ||x_{M_k,new} - x_{M_k,old}||; stop once shift^2 < threshold.
//
// Single source of truth for the formulas: csrc/cpu/channel_kmeans.cpp calls these;
// the batched PyTorch implementation in robustops/ops/channel_kmeans.py (the
// reference, and the GPU path) restates them with the same operation order, so the
// two round alike. The distances are computed as the paper's pairwise_distance does
// (difference, square, sum; not from norms and dot products), and every sum (distances,
// means, the shift) runs in the order of torch's CPU sum (csrc/cpu/channel_kmeans.cpp),
// so that exact-arithmetic ties (a two-channel group's members and its mean) break the
// same way.
#pragma once
#include "common.h"

namespace robustops {
namespace kernels {

// One term of a squared distance, as the paper's (A - B) ** 2: difference, then square.
template <typename T>
RO_HOST_DEVICE inline T km_sq_term(T x, T m) {
  const T d = x - m;
  return d * d;
}

// True when candidate value v (at a channel not taken) beats the best so far.
// best_index < 0: nothing chosen yet, so even a NaN key is taken (the index stays
// in range whatever the data).
template <typename T>
RO_HOST_DEVICE inline bool km_better(T v, T best, int64_t best_index) {
  return best_index < 0 || v < best;
}

}  // namespace kernels
}  // namespace robustops
