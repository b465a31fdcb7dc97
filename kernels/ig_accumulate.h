// ig_accumulate: the per-element math of the integrated-gradients accumulation.
//
// For one element e of a sample (x the input, a the baseline) and S path points
// with gradients g_{s,e} and weights w_s (1/m for METHODS.md's right Riemann sum):
//   acc_e          = sum_s w_s g_{s,e}           (a second output, kept for backward)
//   out_e          = (x_e - a_e) * acc_e
// and its backward, with go_e = dL/dout_e and ga_e = dL/dacc_e (0 unless a higher-order
// derivative uses acc):
//   dL/dg_{s,e}    = w_s ((x_e - a_e) go_e + ga_e)
//   dL/dx_e        = go_e * acc_e                (dL/da_e = -dL/dx_e)
//
// The sum over s is a running accumulator (ig_term), so the forward kernels
// (csrc/cpu|cuda/ig_accumulate.*, the Triton kernel) read the path gradients once, in s
// order, and never build a (S, B, ...) product; the backward reads only (B, ...)
// tensors (acc replaces the path gradients) and writes the S path gradients. The
// reference (robustops/ops/ig_accumulate.py) restates the formula and is the oracle.
// Every function is branch-free so the CPU loops vectorise.
#pragma once

#include "common.h"

namespace robustops {
namespace kernels {

// One step of the weighted path sum: acc + w g.
template <typename T>
RO_HOST_DEVICE inline T ig_term(T acc, T w, T g) {
  return acc + w * g;
}

// The attribution from the accumulated path sum: (x - a) * acc.
template <typename T>
RO_HOST_DEVICE inline T ig_finish(T acc, T x, T a) {
  return (x - a) * acc;
}

// (x - a) * go + ga: the factor every path gradient's backward shares (times w_s).
template <typename T>
RO_HOST_DEVICE inline T ig_scaled_grad(T x, T a, T go, T ga) {
  return (x - a) * go + ga;
}

// dL/dg_{s,e} = w_s * ((x - a) * go + ga), from ig_scaled_grad.
template <typename T>
RO_HOST_DEVICE inline T ig_path_grad(T w, T scaled) {
  return w * scaled;
}

// dL/dx = go * acc (and dL/da = -dL/dx).
template <typename T>
RO_HOST_DEVICE inline T ig_end_grad(T acc, T go) {
  return go * acc;
}

}  // namespace kernels
}  // namespace robustops
