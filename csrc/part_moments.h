// Host entry points of the part_moments op (bound in csrc/module.cpp).
//
// Contract (checked in robustops/ops/part_moments.py, not here):
//   logits (B, C, H, W) contiguous NCHW, C = K + 1 >= 2, H, W >= 1, B >= 1, one
//     floating dtype (float32, float64, float16, bfloat16);
//   features (B, K, 5) contiguous of logits' dtype; stats (B, 6K + 1) contiguous float64
//     (per part A, X, XX, Y, YY, Q; then F: see kernels/part_moments.h);
//   grad (B, K, 5) contiguous float64; grad_logits like logits.
// Compute type: float32, or float64 for float64 logits (half/bfloat16 in float);
// the moments accumulate in float64 across rows.
#pragma once
#include <ATen/core/Tensor.h>

namespace robustops {

void part_moments_cpu(at::Tensor& features, at::Tensor& stats, const at::Tensor& logits,
                      bool weighted);
void part_moments_backward_cpu(at::Tensor& grad_logits, const at::Tensor& grad,
                               const at::Tensor& logits, const at::Tensor& stats,
                               bool weighted);

#ifdef ROBUSTOPS_WITH_CUDA
void part_moments_cuda(at::Tensor& features, at::Tensor& stats, const at::Tensor& logits,
                       bool weighted);
void part_moments_backward_cuda(at::Tensor& grad_logits, const at::Tensor& grad,
                                const at::Tensor& logits, const at::Tensor& stats,
                                bool weighted);
#endif

}  // namespace robustops
