// Host entry points of the pgd_step op (bound in csrc/module.cpp).
//
// Contract (checked in robustops/ops/pgd_step.py, not here):
//   out, x, x_nat, grad: same shape and strides, non-overlapping and dense with
//     the sample dimension outermost (contiguous or channels_last), same device;
//     out/x/x_nat share a floating dtype, grad has the same dtype; out may alias x.
//   eps_t, alpha_t: undefined, or (B,) contiguous tensors of the compute type
//     (float32, or float64 for float64 images); when undefined, the scalar is used.
// Returns true when every written element and every x_nat element is finite
// (the CPU kernel computes this for free in its store loop; CUDA returns true).
#pragma once
#include <ATen/core/Tensor.h>

namespace robustops {

// Data of an optional per-sample tensor, or nullptr when it is undefined.
template <typename T>
inline const T* optional_ptr(const at::Tensor& t) {
  return t.defined() ? t.const_data_ptr<T>() : nullptr;
}

bool pgd_step_cpu(at::Tensor& out, const at::Tensor& x, const at::Tensor& x_nat,
                  const at::Tensor& grad, double eps, double alpha,
                  const at::Tensor& eps_t, const at::Tensor& alpha_t, double lo,
                  double hi, bool l2);

#ifdef ROBUSTOPS_WITH_CUDA
bool pgd_step_cuda(at::Tensor& out, const at::Tensor& x, const at::Tensor& x_nat,
                   const at::Tensor& grad, double eps, double alpha,
                   const at::Tensor& eps_t, const at::Tensor& alpha_t, double lo,
                   double hi, bool l2);
#endif

}  // namespace robustops
