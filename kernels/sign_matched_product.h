// sign_matched_product: the per-element math of WACR's term (METHODS.md section 5).
//
// For one sample, with B the true-class attribution and D = -IG^CE(x -> x'):
//   L = sum_{j: sign B_j == sign D_j} B_j D_j  +  sum_{j: signs differ} |D_j|
// with sign(0) = 0 (so B_j = D_j = 0 is a match contributing 0, and B_j != 0,
// D_j = 0 contributes |0| = 0). Per element, with m = [sign B == sign D]:
//   value      = m B D + (1 - m) |D|
//   dL/dB      = go m D
//   dL/dD      = go (m B + (1 - m) sign D)
// The match mask is piecewise constant: its derivative is 0 (taken as such at the
// sign changes, like relu'(0) = 0). Everything is written as selects so the CPU
// loops vectorise. Used by csrc/cpu|cuda/sign_matched_product.*; restated by the
// Triton kernels and the reference (robustops/ops/sign_matched_product.py).
#pragma once

#include "common.h"

namespace robustops {
namespace kernels {

// sign(v) in {-1, 0, 1}.
template <typename T>
RO_HOST_DEVICE inline T smp_sign(T v) {
  return T(v > T(0)) - T(v < T(0));
}

// 1 where sign(b) == sign(d), else 0.
template <typename T>
RO_HOST_DEVICE inline T smp_match(T b, T d) {
  return T(smp_sign(b) == smp_sign(d));
}

// m b d + (1 - m) |d|.
template <typename T>
RO_HOST_DEVICE inline T smp_value(T b, T d) {
  const T m = smp_match(b, d);
  return m * b * d + (T(1) - m) * (d * smp_sign(d));
}

// dL/db = go m d.
template <typename T>
RO_HOST_DEVICE inline T smp_grad_b(T b, T d, T go) {
  return go * smp_match(b, d) * d;
}

// dL/dd = go (m b + (1 - m) sign d).
template <typename T>
RO_HOST_DEVICE inline T smp_grad_d(T b, T d, T go) {
  const T m = smp_match(b, d);
  return go * (m * b + (T(1) - m) * smp_sign(d));
}

}  // namespace kernels
}  // namespace robustops
