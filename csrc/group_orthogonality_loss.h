// Host entry points of the group_orthogonality_loss op (bound in csrc/module.cpp).
//
// Contract (checked in robustops/ops/group_orthogonality_loss.py, not here):
//   features (B, C, H, W) contiguous float32 or float64 (computed in it); assignment
//   (B, C) int64 contiguous, same device; num_groups K >= 1. out: 0-d, features' dtype.
//   grad_out: 0-d of features' dtype (read on the device: no host synchronisation);
//   grad_features like features. Labels outside [0, K) count in no group.
#pragma once
#include <ATen/core/Tensor.h>

namespace robustops {

void group_orthogonality_loss_cpu(at::Tensor& out, const at::Tensor& features,
                                  const at::Tensor& assignment, int64_t num_groups);
void group_orthogonality_loss_backward_cpu(at::Tensor& grad_features, const at::Tensor& grad_out,
                                           const at::Tensor& features,
                                           const at::Tensor& assignment, int64_t num_groups);

#ifdef ROBUSTOPS_WITH_CUDA
void group_orthogonality_loss_cuda(at::Tensor& out, const at::Tensor& features,
                                   const at::Tensor& assignment, int64_t num_groups);
void group_orthogonality_loss_backward_cuda(at::Tensor& grad_features,
                                            const at::Tensor& grad_out,
                                            const at::Tensor& features,
                                            const at::Tensor& assignment, int64_t num_groups);
#endif

}  // namespace robustops
