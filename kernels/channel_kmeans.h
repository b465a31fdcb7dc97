// channel_kmeans: the per-element math of TENET's channel k-means (METHODS.md section 2).
//
// Per sample, the C channel vectors x_c (H*W values each) are grouped around K
// medoids (centres that are always real channels). One iteration:
//   d[c][k]  = (||x_c||^2 - 2 <x_c, x_{M_k}>) + ||x_{M_k}||^2       (km_distance)
//   a[c]     = the first k minimising d[c][k]
//   mean_k   = mean of the channels with a[c] = k
//   key_k[c] = ||x_c||^2 - 2 <x_c, mean_k>  (||x_c - mean_k||^2 less the constant
//              ||mean_k||^2; km_snap_key), or -min_k d[c][k] for an empty group
//              (it is re-seeded at the channel farthest from its own centre)
//   M_k      = the first channel minimising key_k over the channels not taken by
//              groups 0..k-1 of this iteration (distinct medoids, as the paper's code)
//   shift    = sum_k ||x_{M_k,new} - x_{M_k,old}||; stop once shift^2 < threshold.
//
// Single source of truth for the formulas: csrc/cpu/channel_kmeans.cpp calls these;
// the batched PyTorch implementation in robustops/ops/channel_kmeans.py (the
// reference, and the GPU path) restates them with the same operation order, so the
// two round alike.
#pragma once
#include "common.h"

namespace robustops {
namespace kernels {

// Squared distance of a channel to a medoid from the dot product and both norms.
template <typename T>
RO_HOST_DEVICE inline T km_distance(T xx_c, T dot, T xx_m) {
  return (xx_c - T(2) * dot) + xx_m;
}

// The snapping key of a channel for a group mean: ||x_c - mean||^2 - ||mean||^2.
template <typename T>
RO_HOST_DEVICE inline T km_snap_key(T xx_c, T dot_mean) {
  return xx_c - T(2) * dot_mean;
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
