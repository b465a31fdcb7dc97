// Host entry points of the part_moments op: the device kernels (csrc/cpu, csrc/cuda) and
// what csrc/ops/part_moments.cpp shares with them (checks, layout handling).
//
// Kernel contract (established by part_moments_into / part_moments_backward_into, not
// checked by the kernels):
//   logits (B, C, H, W) contiguous NCHW, C = K + 1 >= 2, H, W >= 1, B >= 1, one
//     floating dtype (float32, float64, float16, bfloat16);
//   features (B, K, 5) contiguous of logits' dtype; stats (B, 6K + 1) contiguous float64
//     (per part A, X, XX, Y, YY, Q; then F: see kernels/part_moments.h);
//   softmax: empty (numel 0: the forward does not save it, the backward recomputes it
//     from the logits) or (B, C, H, W) contiguous of the compute type below: the channel
//     softmax S, written by the forward, read by the backward instead of recomputing it
//     (the logits are then read only in weighted mode, and may have any strides in bbox
//     mode); grad_logits (B, C, H, W) contiguous of logits' dtype, and may be softmax
//     itself (same dtype: float32 or float64 logits): the gradient then overwrites it;
//   grad (B, K, 5) contiguous float64.
// Compute type: float32, or float64 for float64 logits (half/bfloat16 in float);
// the moments accumulate in float64 across rows.
#pragma once
#include <ATen/core/Tensor.h>

#include <tuple>

namespace robustops {

void part_moments_cpu(at::Tensor& features, at::Tensor& stats, at::Tensor& softmax,
                      const at::Tensor& logits, bool weighted);
void part_moments_backward_cpu(at::Tensor& grad_logits, const at::Tensor& grad,
                               const at::Tensor& logits, const at::Tensor& stats,
                               const at::Tensor& softmax, bool weighted);

// The device kernels (part_moments_cpu / part_moments_cuda, and their backwards).
using PartMomentsKernel = void (*)(at::Tensor& features, at::Tensor& stats,
                                   at::Tensor& softmax, const at::Tensor& logits,
                                   bool weighted);
using PartMomentsBackwardKernel = void (*)(at::Tensor& grad_logits, const at::Tensor& grad,
                                           const at::Tensor& logits, const at::Tensor& stats,
                                           const at::Tensor& softmax, bool weighted);

// Checks the arguments (the messages of robustops/ops/part_moments.py), allocates the
// outputs and runs `kernel` on logits made contiguous: (features, stats, softmax), the
// softmax empty unless save_softmax.
std::tuple<at::Tensor, at::Tensor, at::Tensor> part_moments_into(const at::Tensor& logits,
                                                                 bool weighted,
                                                                 bool save_softmax,
                                                                 PartMomentsKernel kernel);

// Checks the arguments and writes dL/dlogits into a new contiguous tensor (or, in_place,
// over softmax, which must then be a contiguous tensor of logits' dtype and shape).
at::Tensor part_moments_backward_into(const at::Tensor& grad, const at::Tensor& logits,
                                      const at::Tensor& stats, const at::Tensor& softmax,
                                      bool weighted, bool in_place,
                                      PartMomentsBackwardKernel kernel);

// The ops' kernels for one dispatch key, over that device's kernels.
template <PartMomentsKernel kernel>
std::tuple<at::Tensor, at::Tensor, at::Tensor> part_moments_op(const at::Tensor& logits,
                                                               bool weighted,
                                                               bool save_softmax) {
  return part_moments_into(logits, weighted, save_softmax, kernel);
}

template <PartMomentsBackwardKernel kernel>
at::Tensor part_moments_backward_op(const at::Tensor& grad, const at::Tensor& logits,
                                    const at::Tensor& stats, const at::Tensor& softmax,
                                    bool weighted) {
  return part_moments_backward_into(grad, logits, stats, softmax, weighted, false, kernel);
}

template <PartMomentsBackwardKernel kernel>
void part_moments_backward_inplace_op(const at::Tensor& grad, const at::Tensor& logits,
                                      const at::Tensor& stats, at::Tensor& softmax,
                                      bool weighted) {
  part_moments_backward_into(grad, logits, stats, softmax, weighted, true, kernel);
}

#ifdef ROBUSTOPS_WITH_CUDA
void part_moments_cuda(at::Tensor& features, at::Tensor& stats, at::Tensor& softmax,
                       const at::Tensor& logits, bool weighted);
void part_moments_backward_cuda(at::Tensor& grad_logits, const at::Tensor& grad,
                                const at::Tensor& logits, const at::Tensor& stats,
                                const at::Tensor& softmax, bool weighted);
#endif

}  // namespace robustops
