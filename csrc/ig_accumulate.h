// Host entry points of the ig_accumulate op (bound in csrc/module.cpp).
//
// Contract (checked in robustops/ops/ig_accumulate.py, not here):
//   path_grads / grad_path (S, n) and x, baseline, out, grad_out, grad_x (n) of one
//   floating dtype, and acc, grad_acc (n) of the compute type, all in one memory layout:
//   the kernels walk the n elements of a sample batch as one dense block (same strides
//   for all, path step s at offset s * n). weights: (S,) contiguous, compute type.
// Compute type: float32, or float64 for float64 tensors (half/bfloat16 in float).
#pragma once
#include <ATen/core/Tensor.h>

namespace robustops {

// out = (x - baseline) * acc, acc = sum_s weights[s] path_grads[s].
void ig_accumulate_cpu(at::Tensor& out, at::Tensor& acc, const at::Tensor& path_grads,
                       const at::Tensor& x, const at::Tensor& baseline,
                       const at::Tensor& weights);
// grad_path[s] = weights[s] ((x - baseline) grad_out + grad_acc), grad_x = grad_out acc.
void ig_accumulate_backward_cpu(at::Tensor& grad_path, at::Tensor& grad_x,
                                const at::Tensor& grad_out, const at::Tensor& grad_acc,
                                const at::Tensor& acc, const at::Tensor& x,
                                const at::Tensor& baseline, const at::Tensor& weights);

#ifdef ROBUSTOPS_WITH_CUDA
void ig_accumulate_cuda(at::Tensor& out, at::Tensor& acc, const at::Tensor& path_grads,
                        const at::Tensor& x, const at::Tensor& baseline,
                        const at::Tensor& weights);
void ig_accumulate_backward_cuda(at::Tensor& grad_path, at::Tensor& grad_x,
                                 const at::Tensor& grad_out, const at::Tensor& grad_acc,
                                 const at::Tensor& acc, const at::Tensor& x,
                                 const at::Tensor& baseline, const at::Tensor& weights);
#endif

}  // namespace robustops
