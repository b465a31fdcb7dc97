// group_inhibition_mask: the per-element math of TENET's group-wise inhibition mask
// (METHODS.md section 2, step 3).
//
// Per sample b and group g (the channels c with assignment a[c] = g):
//   w_c  = mean_hw G[c]                         (channel weight)
//   s_g  = sum_{c in g} w_c                     (group weight)
//   m_g  = sum_{c in g} w_c F[c]                (an H x W map)
//   mu_g = mean_hw m_g,  sd_g = sqrt(mean_hw (m_g - mu_g)^2)   (population std)
//   mask = 1 / (1 + exp((m_g - mu_g) / (sd_g + 1e-8)))  = sigmoid(-z)   unless s_g <= 0
//   mask = 1                                                            if s_g <= 0
// (a NaN s_g inhibits, as in the paper's code: the mask is NaN, not a silent 1)
// A flat map (sd_g <= 1024 eps |mu_g|, eps the compute dtype's machine epsilon) has
// z = 0, so mask 0.5: a constant map's sd is rounding noise of mu_g, and dividing by
// it would turn that noise into an arbitrary z (0.284 instead of the exact 0.5).
// and every channel of group g gets mask_g. A channel whose label is outside
// [0, K) belongs to no group and gets 1 (the CUDA and Triton kernels rely on this
// to stay memory-safe; Python rejects such labels on CPU).
//
// Single source of truth: csrc/cpu/group_inhibition_mask.cpp and
// csrc/cuda/group_inhibition_mask.cu call these functions;
// robustops/triton/group_inhibition_mask.py and the reference in
// robustops/ops/group_inhibition_mask.py restate them.
#pragma once
#include "common.h"

namespace robustops {
namespace kernels {

// The z-score's stabiliser (the paper's 1e-8 added to the std).
constexpr double kGimStdEps = 1e-8;

// Whether label a names one of the K groups.
RO_HOST_DEVICE inline bool gim_valid_label(int64_t a, int64_t k) { return a >= 0 && a < k; }

// Population standard deviation from the sum of squared deviations over n values.
template <typename T>
RO_HOST_DEVICE inline T gim_std(T sum_sq_dev, int64_t n) {
  return ro_sqrt(sum_sq_dev / static_cast<T>(n));
}

// A map is flat (treated as constant, z = 0) when sd <= kGimFlatUlps * eps(T) * |mu|.
constexpr double kGimFlatUlps = 1024.0;

// The flatness threshold's relative tolerance in T: kGimFlatUlps machine epsilons.
template <typename T>
RO_HOST_DEVICE inline T gim_flat_rtol() {
  return T(kGimFlatUlps) * (sizeof(T) == 4 ? T(1.1920928955078125e-07)
                                           : T(2.220446049250313e-16));
}

// Whether a group map of mean mu and std sd is flat (its spread is rounding noise).
// NaN never counts as flat (it propagates through z).
template <typename T>
RO_HOST_DEVICE inline bool gim_flat(T mu, T sd) {
  return sd <= gim_flat_rtol<T>() * ro_abs(mu);
}

// Whether a group of weight s inhibits: the paper's `if weight <= 0: mask = 1`, taken
// literally, so a NaN weight (a NaN gradient) inhibits and its mask comes out NaN, as in
// the paper's code, instead of a silent 1.
template <typename T>
RO_HOST_DEVICE inline bool gim_inhibits(T s) {
  return !(s <= T(0));
}

// The mask of one element of group map m (mean mu, std sd), or 1 when the group does
// not inhibit (gim_inhibits); 0.5 (z = 0) when the map is flat.
template <typename T>
RO_HOST_DEVICE inline T gim_mask_value(T m, T mu, T sd, bool positive) {
  const T z = gim_flat(mu, sd) ? T(0) : (m - mu) / (sd + T(kGimStdEps));
  return positive ? T(1) / (T(1) + ro_exp(z)) : T(1);
}

}  // namespace kernels
}  // namespace robustops
