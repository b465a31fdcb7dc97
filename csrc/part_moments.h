// Host entry points of the part_moments op (bound in csrc/module.cpp).
//
// Contract (checked in robustops/ops/part_moments.py, not here):
//   logits (B, C, H, W) contiguous NCHW, C = K + 1 >= 2, H, W >= 1, B >= 1, one
//     floating dtype (float32, float64, float16, bfloat16);
//   features (B, K, 5) contiguous of logits' dtype; stats (B, 6K + 1) contiguous float64
//     (per part A, X, XX, Y, YY, Q; then F: see kernels/part_moments.h);
//   softmax: empty (numel 0: the forward does not save it, the backward recomputes it
//     from the logits) or (B, C, H, W) contiguous of the compute type below: the channel
//     softmax S, written by the forward, read by the backward instead of recomputing it
//     (the logits are then read only in weighted mode); grad_logits may be softmax itself
//     (same dtype: float32 or float64 logits), the gradient then overwrites it in place;
//   grad (B, K, 5) contiguous float64; grad_logits like logits.
// Compute type: float32, or float64 for float64 logits (half/bfloat16 in float);
// the moments accumulate in float64 across rows.
#pragma once
#include <ATen/core/Tensor.h>

namespace robustops {

void part_moments_cpu(at::Tensor& features, at::Tensor& stats, at::Tensor& softmax,
                      const at::Tensor& logits, bool weighted);
void part_moments_backward_cpu(at::Tensor& grad_logits, const at::Tensor& grad,
                               const at::Tensor& logits, const at::Tensor& stats,
                               const at::Tensor& softmax, bool weighted);

#ifdef ROBUSTOPS_WITH_CUDA
void part_moments_cuda(at::Tensor& features, at::Tensor& stats, at::Tensor& softmax,
                       const at::Tensor& logits, bool weighted);
void part_moments_backward_cuda(at::Tensor& grad_logits, const at::Tensor& grad,
                                const at::Tensor& logits, const at::Tensor& stats,
                                const at::Tensor& softmax, bool weighted);
#endif

}  // namespace robustops
