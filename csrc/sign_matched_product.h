// Host entry points of the sign_matched_product op (bound in csrc/module.cpp).
//
// Contract (checked in robustops/ops/sign_matched_product.py, not here):
//   b, d (B, N) contiguous, one floating dtype; out (B,) and grad_out (B,)
//   contiguous of that dtype; grad_b, grad_d like b.
// Compute type: float32, or float64 for float64 tensors (half/bfloat16 in float).
#pragma once
#include <ATen/core/Tensor.h>

namespace robustops {

void sign_matched_product_cpu(at::Tensor& out, const at::Tensor& b, const at::Tensor& d);
void sign_matched_product_backward_cpu(at::Tensor& grad_b, at::Tensor& grad_d,
                                       const at::Tensor& grad_out, const at::Tensor& b,
                                       const at::Tensor& d);

#ifdef ROBUSTOPS_WITH_CUDA
void sign_matched_product_cuda(at::Tensor& out, const at::Tensor& b, const at::Tensor& d);
void sign_matched_product_backward_cuda(at::Tensor& grad_b, at::Tensor& grad_d,
                                        const at::Tensor& grad_out, const at::Tensor& b,
                                        const at::Tensor& d);
#endif

}  // namespace robustops
