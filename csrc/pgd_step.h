// Host entry points of the pgd_step op: the device kernels (csrc/cpu, csrc/cuda) and
// what csrc/ops/pgd_step.cpp shares with them (checks, layout handling).
//
// Kernel contract (established by pgd_step_into, not checked by the kernels):
//   out, x, x_nat, grad: same shape and strides, non-overlapping and dense with
//     the sample dimension outermost (contiguous or channels_last), same device;
//     out/x/x_nat share a floating dtype, grad has the same dtype; out may alias x.
//   eps_t, alpha_t: undefined, or (B,) contiguous tensors of the compute type
//     (float32, or float64 for float64 images); when undefined, the scalar is used.
// Returns true when every written element and every x and x_nat element is finite
// (the CPU kernel computes this for free in its store loop; CUDA returns true).
#pragma once
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <c10/util/string_view.h>

#include <optional>

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

// A device kernel (pgd_step_cpu / pgd_step_cuda).
using PgdStepKernel = bool (*)(at::Tensor& out, const at::Tensor& x, const at::Tensor& x_nat,
                               const at::Tensor& grad, double eps, double alpha,
                               const at::Tensor& eps_t, const at::Tensor& alpha_t, double lo,
                               double hi, bool l2);

// Every argument check of the op, with the messages of robustops/ops/pgd_step.py.
void check_pgd_step_args(const at::Tensor& x, const at::Tensor& x_nat, const at::Tensor& grad,
                         double eps, double alpha, const std::optional<at::Tensor>& eps_t,
                         const std::optional<at::Tensor>& alpha_t, double lo, double hi,
                         c10::string_view norm);

// Checks the arguments, gives `kernel` operands in the layout it needs (copies only
// when they differ) and writes the step into out (which may be x); raises ValueError
// when the kernel reports a non-finite result.
void pgd_step_into(at::Tensor& out, const at::Tensor& x, const at::Tensor& x_nat,
                   const at::Tensor& grad, double eps, double alpha,
                   const std::optional<at::Tensor>& eps_t,
                   const std::optional<at::Tensor>& alpha_t, double lo, double hi,
                   c10::string_view norm, PgdStepKernel kernel);

// The op's kernel for one dispatch key, over that device's `kernel`.
template <PgdStepKernel kernel>
at::Tensor pgd_step_op(const at::Tensor& x, const at::Tensor& x_nat, const at::Tensor& grad,
                       double eps, double alpha, const std::optional<at::Tensor>& eps_t,
                       const std::optional<at::Tensor>& alpha_t, double lo, double hi,
                       c10::string_view norm) {
  at::Tensor out = at::empty_like(x);
  pgd_step_into(out, x, x_nat, grad, eps, alpha, eps_t, alpha_t, lo, hi, norm, kernel);
  return out;
}

template <PgdStepKernel kernel>
void pgd_step_inplace_op(at::Tensor& x, const at::Tensor& x_nat, const at::Tensor& grad,
                         double eps, double alpha, const std::optional<at::Tensor>& eps_t,
                         const std::optional<at::Tensor>& alpha_t, double lo, double hi,
                         c10::string_view norm) {
  pgd_step_into(x, x, x_nat, grad, eps, alpha, eps_t, alpha_t, lo, hi, norm, kernel);
}

#ifdef ROBUSTOPS_WITH_CUDA
bool pgd_step_cuda(at::Tensor& out, const at::Tensor& x, const at::Tensor& x_nat,
                   const at::Tensor& grad, double eps, double alpha,
                   const at::Tensor& eps_t, const at::Tensor& alpha_t, double lo,
                   double hi, bool l2);
#endif

}  // namespace robustops
