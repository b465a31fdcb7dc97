// rank_metrics: the per-row formulas of the attribution-robustness metrics.
//
// For two maps a, b of n values (one sample, METHODS.md section 5):
//   top-k intersection  |TopK(a) n TopK(b)| / k
//   Kendall tau-b       (n0 - n1 - n2 + n3 - 2 D) / sqrt((n0 - n1) (n0 - n2))
//                       n0 = n(n-1)/2 pairs, n1 / n2 pairs tied in a / in b, n3 pairs
//                       tied in both, D discordant pairs (Knight's algorithm; scipy's
//                       kendalltau(variant='b'))
//   Spearman rho        Pearson correlation of the average ranks (ties share the mean
//                       of their positions; scipy's spearmanr)
// A row whose a or b is constant has an undefined tau / rho: NaN, as in scipy.
//
// The sort keys map floats to unsigned integers whose order is the float order
// (-0.0 and +0.0 map to one key, so they tie), which lets csrc/cpu/rank_metrics.cpp
// radix-sort instead of comparison-sort. The reference in
// robustops/ops/rank_metrics.py (plain PyTorch; what CUDA tensors run) restates these.
#pragma once
#include <stdint.h>
#include <string.h>

#include "common.h"

namespace robustops {
namespace kernels {

// Order-preserving unsigned key of a float / double (NaN excluded by the caller).
RO_HOST_DEVICE inline uint32_t rank_key(float v) {
  v = v + 0.0f;  // -0.0 -> +0.0: equal values, equal keys
  uint32_t u;
  memcpy(&u, &v, sizeof(u));
  return (u >> 31) ? ~u : (u | 0x80000000u);
}

RO_HOST_DEVICE inline uint64_t rank_key(double v) {
  v = v + 0.0;
  uint64_t u;
  memcpy(&u, &v, sizeof(u));
  return (u >> 63) ? ~u : (u | 0x8000000000000000ull);
}

// Pairs inside a tie group of t equal values.
RO_HOST_DEVICE inline double tie_pairs(int64_t t) {
  return 0.5 * static_cast<double>(t) * static_cast<double>(t - 1);
}

// Kendall tau-b from the pair counts (NaN when a or b is constant, like scipy).
RO_HOST_DEVICE inline double kendall_tau_b(int64_t n, double ties_a, double ties_b,
                                           double ties_ab, double discordant) {
  const double n0 = tie_pairs(n);
  const double num = n0 - ties_a - ties_b + ties_ab - 2.0 * discordant;
  return num / (ro_sqrt(n0 - ties_a) * ro_sqrt(n0 - ties_b));
}

// Pearson correlation from centred sums: sab / sqrt(saa sbb).
RO_HOST_DEVICE inline double pearson(double sab, double saa, double sbb) {
  return sab / ro_sqrt(saa * sbb);
}

}  // namespace kernels
}  // namespace robustops
