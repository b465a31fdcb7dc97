// Host entry points of the group_inhibition_mask op: the device kernels (csrc/cpu,
// csrc/cuda) and what csrc/ops/group_inhibition_mask.cpp shares with them (checks,
// operand preparation).
//
// Kernel contract (established by group_inhibition_mask_run, not checked by the kernels):
//   features, grad (B, C, H, W) contiguous, one floating dtype (float32 or float64,
//   computed in it), one device; assignment (B, C) int64 contiguous; out like features,
//   not empty. num_groups K >= 1. Labels outside [0, K) are rejected for CPU tensors
//   (check_group_labels: free there, a host synchronisation on a GPU); the kernels treat
//   them as "no group" (mask 1) so a bad label never reads out of bounds.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace robustops {

void group_inhibition_mask_cpu(at::Tensor& out, const at::Tensor& features,
                               const at::Tensor& grad, const at::Tensor& assignment,
                               int64_t num_groups);

// A device kernel (group_inhibition_mask_cpu / group_inhibition_mask_cuda).
using GroupInhibitionMaskKernel = void (*)(at::Tensor& out, const at::Tensor& features,
                                           const at::Tensor& grad, const at::Tensor& assignment,
                                           int64_t num_groups);

// Every argument check of the op but the labels' values, with the messages of
// robustops/ops/group_inhibition_mask.py.
void check_group_inhibition_mask_args(const at::Tensor& features, const at::Tensor& grad,
                                      const at::Tensor& assignment, int64_t num_groups);

// A ValueError naming the first label of assignment (B, C) int64, CPU, outside [0, K):
// "<op>: assignment[i, j] = v is not a group label in [0, K)".
void check_group_labels(const char* op, const at::Tensor& assignment, int64_t num_groups);

// Checks the arguments (the labels too when check_labels), gives `kernel` contiguous
// operands and returns the mask.
at::Tensor group_inhibition_mask_run(const at::Tensor& features, const at::Tensor& grad,
                                     const at::Tensor& assignment, int64_t num_groups,
                                     bool check_labels, GroupInhibitionMaskKernel kernel);

// The op's kernel for one dispatch key, over that device's `kernel`; check_labels where
// reading the labels is free (the CPU).
template <GroupInhibitionMaskKernel kernel, bool check_labels>
at::Tensor group_inhibition_mask_op(const at::Tensor& features, const at::Tensor& grad,
                                    const at::Tensor& assignment, int64_t num_groups) {
  return group_inhibition_mask_run(features, grad, assignment, num_groups, check_labels, kernel);
}

#ifdef ROBUSTOPS_WITH_CUDA
void group_inhibition_mask_cuda(at::Tensor& out, const at::Tensor& features,
                                const at::Tensor& grad, const at::Tensor& assignment,
                                int64_t num_groups);
#endif

}  // namespace robustops
