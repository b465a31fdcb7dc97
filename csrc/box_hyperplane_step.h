// Host entry points of the box_hyperplane_step op: the device kernel (csrc/cpu; there is
// no CUDA kernel: on a GPU, robustops/ops/box_hyperplane_step.py runs its Triton kernel or
// its PyTorch reference) and what csrc/ops/box_hyperplane_step.cpp shares with it.
//
// Kernel contract (established by box_hyperplane_step_run, not checked by the kernel):
//   t, w: contiguous (N, D) tensors of one dtype (float32 or float64); b: contiguous (N,)
//   of that dtype; out: contiguous (N, D) of that dtype; lo <= hi, both finite.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

namespace robustops {

// Writes each row's step into out (NaN rows where w.t - b is not finite).
void box_hyperplane_step_cpu(at::Tensor& out, const at::Tensor& t, const at::Tensor& w,
                             const at::Tensor& b, bool l2, double lo, double hi);

// A device kernel (box_hyperplane_step_cpu).
using BoxHyperplaneStepKernel = void (*)(at::Tensor& out, const at::Tensor& t,
                                         const at::Tensor& w, const at::Tensor& b, bool l2,
                                         double lo, double hi);

// Every argument check of the op, with the messages of robustops/ops/box_hyperplane_step.py;
// returns true for norm "l2".
bool check_box_hyperplane_step_args(const at::Tensor& t, const at::Tensor& w,
                                    const at::Tensor& b, c10::string_view norm, double lo,
                                    double hi);

// Checks the arguments, gives `kernel` contiguous operands of one dtype (float64 when any
// is float64, else float32) and returns its (N, D) output.
at::Tensor box_hyperplane_step_run(const at::Tensor& t, const at::Tensor& w, const at::Tensor& b,
                                   c10::string_view norm, double lo, double hi,
                                   BoxHyperplaneStepKernel kernel);

// The op's kernel for one dispatch key, over that device's `kernel`.
template <BoxHyperplaneStepKernel kernel>
at::Tensor box_hyperplane_step_op(const at::Tensor& t, const at::Tensor& w, const at::Tensor& b,
                                  c10::string_view norm, double lo, double hi) {
  return box_hyperplane_step_run(t, w, b, norm, lo, hi, kernel);
}

}  // namespace robustops
