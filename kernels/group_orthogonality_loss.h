// group_orthogonality_loss: the per-element math of TENET's orthogonality loss
// (METHODS.md section 2, step 5) and of its gradient.
//
// Per sample b, with n_g channels in group g (assignment a[c] = g):
//   mu_g   = (1 / n_g) sum_{c in g} F[c]     (0 for an empty group)
//   P_b    = K'(K'-1)/2 with K' the number of non-empty groups (1 when K' < 2)
//   L      = (1 / B) sum_b sum_{i<j} |<mu_i, mu_j>| / P_b
// Empty groups have mu = 0, so their inner products vanish and only P_b needs K'.
// Gradient (d|t|/dt = sign(t), sign(0) = 0):
//   dL/dmu_i = (go / (B P_b)) sum_{j != i} sign(<mu_i, mu_j>) mu_j
//   dL/dF[c] = dL/dmu_{a[c]} / n_{a[c]}
// A label outside [0, K) belongs to no group (no term, zero gradient).
//
// Single source of truth: csrc/cpu/group_orthogonality_loss.cpp and
// csrc/cuda/group_orthogonality_loss.cu call these functions;
// robustops/triton/group_orthogonality_loss.py and the reference in
// robustops/ops/group_orthogonality_loss.py restate them.
#pragma once
#include "common.h"

namespace robustops {
namespace kernels {

// P_b: the number of pairs among kprime non-empty groups, or 1 when there are none.
template <typename T>
RO_HOST_DEVICE inline T gol_pairs(int64_t kprime) {
  return kprime > 1 ? static_cast<T>(kprime * (kprime - 1) / 2) : T(1);
}

template <typename T>
RO_HOST_DEVICE inline T gol_sign(T v) {
  return T(v > T(0)) - T(v < T(0));
}

// The group mean's element from its sum and count (0 for an empty group).
template <typename T>
RO_HOST_DEVICE inline T gol_mean(T sum, int64_t count) {
  return count > 0 ? sum / static_cast<T>(count) : T(0);
}

// The coefficient of mu_j in dL/dmu_i (i != j): go sign(<mu_i, mu_j>) / (B P_b).
template <typename T>
RO_HOST_DEVICE inline T gol_coef(T go, T dot, T batch, T pairs) {
  return go * gol_sign(dot) / (batch * pairs);
}

}  // namespace kernels
}  // namespace robustops
