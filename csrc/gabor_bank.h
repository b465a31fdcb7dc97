// Host entry points of the gabor_bank op (bound in csrc/module.cpp).
//
// Contract (checked in robustops/ops/gabor_bank.py, not here):
//   frequency, sigma_x, sigma_y, theta, phase: (F,) contiguous, one floating
//     dtype (float32 or float64), one device; sigma > 0, all finite.
//   out: (F, k, k) contiguous, k odd, the params' dtype and device.
//   grad_out: (F, k, k) contiguous, the params' dtype; the five grad_* outputs:
//     (F,) contiguous, the params' dtype.
// Both compute in double and round once (see kernels/gabor_bank.h).
#pragma once
#include <ATen/core/Tensor.h>

namespace robustops {

void gabor_bank_cpu(at::Tensor& out, const at::Tensor& frequency, const at::Tensor& sigma_x,
                    const at::Tensor& sigma_y, const at::Tensor& theta, const at::Tensor& phase);

void gabor_bank_backward_cpu(const at::Tensor& grad_out, const at::Tensor& frequency,
                             const at::Tensor& sigma_x, const at::Tensor& sigma_y,
                             const at::Tensor& theta, const at::Tensor& phase,
                             at::Tensor& grad_frequency, at::Tensor& grad_sigma_x,
                             at::Tensor& grad_sigma_y, at::Tensor& grad_theta,
                             at::Tensor& grad_phase);

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
