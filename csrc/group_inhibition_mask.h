// Host entry points of the group_inhibition_mask op (bound in csrc/module.cpp).
//
// Contract (checked in robustops/ops/group_inhibition_mask.py, not here):
//   features, grad (B, C, H, W) contiguous, one floating dtype (float32 or float64,
//   computed in it), one device; assignment (B, C) int64 contiguous; out like features.
//   num_groups K >= 1. Labels outside [0, K) are rejected in Python for CPU tensors; the
//   kernels treat them as "no group" (mask 1) so a bad label never reads out of bounds.
#pragma once
#include <ATen/core/Tensor.h>

namespace robustops {

void group_inhibition_mask_cpu(at::Tensor& out, const at::Tensor& features,
                               const at::Tensor& grad, const at::Tensor& assignment,
                               int64_t num_groups);

#ifdef ROBUSTOPS_WITH_CUDA
void group_inhibition_mask_cuda(at::Tensor& out, const at::Tensor& features,
                                const at::Tensor& grad, const at::Tensor& assignment,
                                int64_t num_groups);
#endif

}  // namespace robustops
