// Host entry points of the sign_matched_product op: the device kernels (csrc/cpu,
// csrc/cuda) and what csrc/ops/sign_matched_product.cpp shares with them (checks, layout).
//
// Kernel contract (established by the runners below, not checked by the kernels):
//   b, d (B, N) contiguous, one floating dtype; out (B,) and grad_out (B,)
//   contiguous of that dtype; grad_b, grad_d (B, N) contiguous like b.
// Compute type: float32, or float64 for float64 tensors (half/bfloat16 in float).
#pragma once
#include <ATen/core/Tensor.h>

#include <tuple>

namespace robustops {

void sign_matched_product_cpu(at::Tensor& out, const at::Tensor& b, const at::Tensor& d);
void sign_matched_product_backward_cpu(at::Tensor& grad_b, at::Tensor& grad_d,
                                       const at::Tensor& grad_out, const at::Tensor& b,
                                       const at::Tensor& d);

// Device kernels (sign_matched_product[_backward]_cpu / _cuda).
using SmpKernel = void (*)(at::Tensor& out, const at::Tensor& b, const at::Tensor& d);
using SmpBackwardKernel = void (*)(at::Tensor& grad_b, at::Tensor& grad_d,
                                   const at::Tensor& grad_out, const at::Tensor& b,
                                   const at::Tensor& d);

// Every argument check of the op, with the messages of robustops/ops/sign_matched_product.py.
void check_sign_matched_product_args(const at::Tensor& b, const at::Tensor& d);

// Check the arguments, flatten b, d (B, *) to contiguous (B, N) and run `kernel`: (B,).
at::Tensor sign_matched_product_run(const at::Tensor& b, const at::Tensor& d, SmpKernel kernel);
// The same for the backward: (grad_b, grad_d), contiguous, b's shape.
std::tuple<at::Tensor, at::Tensor> sign_matched_product_backward_run(
    const at::Tensor& grad_out, const at::Tensor& b, const at::Tensor& d,
    SmpBackwardKernel kernel);

// The op's kernels for one dispatch key, over that device's kernels.
template <SmpKernel kernel>
at::Tensor sign_matched_product_op(const at::Tensor& b, const at::Tensor& d) {
  return sign_matched_product_run(b, d, kernel);
}

template <SmpBackwardKernel kernel>
std::tuple<at::Tensor, at::Tensor> sign_matched_product_backward_op(const at::Tensor& grad_out,
                                                                    const at::Tensor& b,
                                                                    const at::Tensor& d) {
  return sign_matched_product_backward_run(grad_out, b, d, kernel);
}

#ifdef ROBUSTOPS_WITH_CUDA
void sign_matched_product_cuda(at::Tensor& out, const at::Tensor& b, const at::Tensor& d);
void sign_matched_product_backward_cuda(at::Tensor& grad_b, at::Tensor& grad_d,
                                        const at::Tensor& grad_out, const at::Tensor& b,
                                        const at::Tensor& d);
#endif

}  // namespace robustops
