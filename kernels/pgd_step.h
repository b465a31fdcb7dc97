// pgd_step: the per-element math of one projected-gradient step.
//
//   x_new = clamp(project(x + alpha * direction(grad), x_nat, eps), lo, hi)
//
// Single source of truth for the formula: the CPU loops (csrc/cpu/pgd_step.cpp)
// and the CUDA kernels (csrc/cuda/pgd_step.cu) call these functions; the Triton
// kernel (robustops/triton/pgd_step.py) and the reference
// (robustops/ops/pgd_step.py) restate them and are tested against them.
//
// Every function is branch-free (comparisons become selects) so the CPU loops
// vectorise; T is the compute type (float for half/bfloat16 storage).
#pragma once
#include "common.h"

namespace robustops {
namespace kernels {

// sign(g) with sign(NaN) = 0: a NaN gradient entry leaves its pixel in place.
template <typename T>
RO_HOST_DEVICE inline T pgd_sign(T g) {
  return T(g > T(0)) - T(g < T(0));
}

// g, or 0 when g is NaN or +-Inf (g - g is NaN exactly for those): the L2
// direction g / ||g|| is undefined for them, so they neither move their pixel
// nor enter the norm.
template <typename T>
RO_HOST_DEVICE inline T pgd_finite_or_zero(T g) {
  return (g - g == T(0)) ? g : T(0);
}

template <typename T>
RO_HOST_DEVICE inline T pgd_min(T a, T b) { return b < a ? b : a; }

template <typename T>
RO_HOST_DEVICE inline T pgd_max(T a, T b) { return a < b ? b : a; }

// Box constraint [lo, hi], applied last.
template <typename T>
RO_HOST_DEVICE inline T pgd_box(T v, T lo, T hi) {
  return pgd_min(pgd_max(v, lo), hi);
}

// True when a or b is NaN or +-Inf (a * 0 + b * 0 is NaN exactly then): one
// compare per element, so the CPU store loops check for free. What they probe
// (csrc/cpu/pgd_step.cpp): L-inf, x and x_nat (the result is then finite: it is
// clamped to the finite eps-box and [lo, hi]; x itself must be probed, the
// projection would map an infinite x to a finite x_nat +- eps); L2, the result and
// x_nat, with x covered by the sample's ||x + step - x_nat||^2 (not finite when
// x is not).
template <typename T>
RO_HOST_DEVICE inline bool pgd_not_finite(T a, T b) {
  const T probe = a * T(0) + b * T(0);
  return probe != probe;
}

// L-inf step for one element: ascend by alpha * sign(g), clip to the eps-box
// around x_nat, then to [lo, hi].
template <typename T>
RO_HOST_DEVICE inline T pgd_linf_element(T x, T x_nat, T g, T eps, T alpha,
                                         T lo, T hi) {
  T v = x + alpha * pgd_sign(g);
  v = pgd_min(pgd_max(v, x_nat - eps), x_nat + eps);
  return pgd_box(v, lo, hi);
}

// L2 step, pass 1 contribution: the squared gradient entry.
template <typename T>
RO_HOST_DEVICE inline T pgd_l2_grad_sq(T g) {
  T f = pgd_finite_or_zero(g);
  return f * f;
}

// 1 / ||g||, or 0 for an all-zero (or all-non-finite) gradient so the step is a
// no-op instead of 0/0.
template <typename T>
RO_HOST_DEVICE inline T pgd_l2_inv_norm(T sum_sq) {
  return sum_sq > T(0) ? T(1) / ro_sqrt(sum_sq) : T(0);
}

// L2 step, pass 2: the unprojected displacement from x_nat of one element.
// scale = alpha / ||g||.
template <typename T>
RO_HOST_DEVICE inline T pgd_l2_delta(T x, T x_nat, T g, T scale) {
  return x + scale * pgd_finite_or_zero(g) - x_nat;
}

// Factor that projects the displacement onto the eps-ball: min(1, eps/||d||).
template <typename T>
RO_HOST_DEVICE inline T pgd_l2_shrink(T delta_sum_sq, T eps) {
  T n = ro_sqrt(delta_sum_sq);
  return n > eps ? eps / n : T(1);
}

// L2 step, pass 3: the new element.
template <typename T>
RO_HOST_DEVICE inline T pgd_l2_element(T x, T x_nat, T g, T scale, T shrink,
                                       T lo, T hi) {
  return pgd_box(x_nat + shrink * pgd_l2_delta(x, x_nat, g, scale), lo, hi);
}

}  // namespace kernels
}  // namespace robustops
