// Host entry points of the gabor_bank op: the device kernels (csrc/cpu, csrc/cuda) and
// what csrc/ops/gabor_bank.cpp shares with them (checks).
//
// Kernel contract (established by gabor_bank_op / gabor_bank_backward_op, not checked
// by the kernels):
//   frequency, sigma_x, sigma_y, theta, phase: (F,) contiguous, one floating
//     dtype (float32 or float64), one device; sigma > 0, all finite.
//   out: (F, k, k) contiguous, k odd, the params' dtype and device.
//   grad_out: (F, k, k) contiguous, the params' dtype; the five grad_* outputs:
//     (F,) contiguous, the params' dtype.
// Both compute in double and round once (see kernels/gabor_bank.h).
#pragma once
#include <ATen/core/Tensor.h>

#include <tuple>

namespace robustops {

void gabor_bank_cpu(at::Tensor& out, const at::Tensor& frequency, const at::Tensor& sigma_x,
                    const at::Tensor& sigma_y, const at::Tensor& theta, const at::Tensor& phase);

void gabor_bank_backward_cpu(const at::Tensor& grad_out, const at::Tensor& frequency,
                             const at::Tensor& sigma_x, const at::Tensor& sigma_y,
                             const at::Tensor& theta, const at::Tensor& phase,
                             at::Tensor& grad_frequency, at::Tensor& grad_sigma_x,
                             at::Tensor& grad_sigma_y, at::Tensor& grad_theta,
                             at::Tensor& grad_phase);

// The device kernels (gabor_bank_cpu / gabor_bank_cuda and their backward).
using GaborBankKernel = void (*)(at::Tensor& out, const at::Tensor& frequency,
                                 const at::Tensor& sigma_x, const at::Tensor& sigma_y,
                                 const at::Tensor& theta, const at::Tensor& phase);
using GaborBankBackwardKernel = void (*)(const at::Tensor& grad_out, const at::Tensor& frequency,
                                         const at::Tensor& sigma_x, const at::Tensor& sigma_y,
                                         const at::Tensor& theta, const at::Tensor& phase,
                                         at::Tensor& grad_frequency, at::Tensor& grad_sigma_x,
                                         at::Tensor& grad_sigma_y, at::Tensor& grad_theta,
                                         at::Tensor& grad_phase);

using GaborGrads = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

// Checks the arguments (the messages of robustops/ops/gabor_bank.py) and the parameter
// values (finite, sigma > 0: read on the CPU, one flag read back from a GPU), then runs
// `kernel` on contiguous parameters.
at::Tensor gabor_bank_run(const at::Tensor& frequency, const at::Tensor& sigma_x,
                          const at::Tensor& sigma_y, const at::Tensor& theta,
                          const at::Tensor& phase, int64_t ksize, GaborBankKernel kernel);

// Checks grad_out against the parameters and runs `kernel` on contiguous operands.
GaborGrads gabor_bank_backward_run(const at::Tensor& grad_out, const at::Tensor& frequency,
                                   const at::Tensor& sigma_x, const at::Tensor& sigma_y,
                                   const at::Tensor& theta, const at::Tensor& phase,
                                   GaborBankBackwardKernel kernel);

// The ops' kernels for one dispatch key, over that device's kernels.
template <GaborBankKernel kernel>
at::Tensor gabor_bank_op(const at::Tensor& frequency, const at::Tensor& sigma_x,
                         const at::Tensor& sigma_y, const at::Tensor& theta,
                         const at::Tensor& phase, int64_t ksize) {
  return gabor_bank_run(frequency, sigma_x, sigma_y, theta, phase, ksize, kernel);
}

template <GaborBankBackwardKernel kernel>
GaborGrads gabor_bank_backward_op(const at::Tensor& grad_out, const at::Tensor& frequency,
                                  const at::Tensor& sigma_x, const at::Tensor& sigma_y,
                                  const at::Tensor& theta, const at::Tensor& phase) {
  return gabor_bank_backward_run(grad_out, frequency, sigma_x, sigma_y, theta, phase, kernel);
}

#ifdef ROBUSTOPS_WITH_CUDA
void gabor_bank_cuda(at::Tensor& out, const at::Tensor& frequency, const at::Tensor& sigma_x,
                     const at::Tensor& sigma_y, const at::Tensor& theta, const at::Tensor& phase);

void gabor_bank_backward_cuda(const at::Tensor& grad_out, const at::Tensor& frequency,
                              const at::Tensor& sigma_x, const at::Tensor& sigma_y,
                              const at::Tensor& theta, const at::Tensor& phase,
                              at::Tensor& grad_frequency, at::Tensor& grad_sigma_x,
                              at::Tensor& grad_sigma_y, at::Tensor& grad_theta,
                              at::Tensor& grad_phase);
#endif

}  // namespace robustops
