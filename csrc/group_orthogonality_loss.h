// Host entry points of the group_orthogonality_loss op and its backward op: the device
// kernels (csrc/cpu, csrc/cuda) and what csrc/ops/group_orthogonality_loss.cpp shares
// with them (checks, operand preparation).
//
// Kernel contract (established by the *_run functions, not checked by the kernels):
//   features (B, C, H, W) contiguous float32 or float64 (computed in it), not empty;
//   assignment (B, C) int64 contiguous, same device; num_groups K >= 1. out: 0-d,
//   features' dtype. grad_out: 0-d of features' dtype (read on the device: no host
//   synchronisation); grad_features like features. Labels outside [0, K) count in no
//   group (rejected beforehand for CPU tensors, where reading them is free).
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace robustops {

void group_orthogonality_loss_cpu(at::Tensor& out, const at::Tensor& features,
                                  const at::Tensor& assignment, int64_t num_groups);
void group_orthogonality_loss_backward_cpu(at::Tensor& grad_features, const at::Tensor& grad_out,
                                           const at::Tensor& features,
                                           const at::Tensor& assignment, int64_t num_groups);

// Device kernels (group_orthogonality_loss[_backward]_cpu / _cuda).
using GroupOrthogonalityLossKernel = void (*)(at::Tensor& out, const at::Tensor& features,
                                              const at::Tensor& assignment, int64_t num_groups);
using GroupOrthogonalityLossBackwardKernel = void (*)(at::Tensor& grad_features,
                                                      const at::Tensor& grad_out,
                                                      const at::Tensor& features,
                                                      const at::Tensor& assignment,
                                                      int64_t num_groups);

// Every argument check of the op but the labels' values, with the messages of
// robustops/ops/group_orthogonality_loss.py (op: the name the messages start with).
void check_group_orthogonality_loss_args(const char* op, const at::Tensor& features,
                                         const at::Tensor& assignment, int64_t num_groups);

// Check the arguments (the labels too when check_labels), give `kernel` contiguous
// operands and return the 0-d loss / dL/dfeatures.
at::Tensor group_orthogonality_loss_run(const at::Tensor& features, const at::Tensor& assignment,
                                        int64_t num_groups, bool check_labels,
                                        GroupOrthogonalityLossKernel kernel);
at::Tensor group_orthogonality_loss_backward_run(const at::Tensor& grad_out,
                                                 const at::Tensor& features,
                                                 const at::Tensor& assignment,
                                                 int64_t num_groups,
                                                 GroupOrthogonalityLossBackwardKernel kernel);

// The ops' kernels for one dispatch key, over that device's kernels; check_labels where
// reading the labels is free (the CPU).
template <GroupOrthogonalityLossKernel kernel, bool check_labels>
at::Tensor group_orthogonality_loss_op(const at::Tensor& features, const at::Tensor& assignment,
                                       int64_t num_groups) {
  return group_orthogonality_loss_run(features, assignment, num_groups, check_labels, kernel);
}

template <GroupOrthogonalityLossBackwardKernel kernel>
at::Tensor group_orthogonality_loss_backward_op(const at::Tensor& grad_out,
                                                const at::Tensor& features,
                                                const at::Tensor& assignment,
                                                int64_t num_groups) {
  return group_orthogonality_loss_backward_run(grad_out, features, assignment, num_groups,
                                               kernel);
}

#ifdef ROBUSTOPS_WITH_CUDA
void group_orthogonality_loss_cuda(at::Tensor& out, const at::Tensor& features,
                                   const at::Tensor& assignment, int64_t num_groups);
void group_orthogonality_loss_backward_cuda(at::Tensor& grad_features,
                                            const at::Tensor& grad_out,
                                            const at::Tensor& features,
                                            const at::Tensor& assignment, int64_t num_groups);
#endif

}  // namespace robustops
