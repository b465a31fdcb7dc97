// Host entry points of the pixel_softmax_kl op (bound in csrc/module.cpp).
//
// Contract (checked in robustops/ops/pixel_softmax_kl.py, not here):
//   attr (B, C, N) contiguous (N = H*W pixels), one floating dtype; out (B,) of attr's
//   dtype and lse (B,) of the compute type, contiguous; grad_out (B,) of attr's dtype;
//   grad_s (B, N) contiguous of attr's dtype: the gradient of every channel.
// Compute type: float32, or float64 for float64 tensors (half/bfloat16 in float).
#pragma once
#include <ATen/core/Tensor.h>

namespace robustops {

// out = KL(U || softmax(sum_c attr)), lse = logsumexp(sum_c attr), per sample.
void pixel_softmax_kl_cpu(at::Tensor& out, at::Tensor& lse, const at::Tensor& attr);
// grad_s[b, i] = grad_out[b] (exp(s_bi - lse_b) - 1/N).
void pixel_softmax_kl_backward_cpu(at::Tensor& grad_s, const at::Tensor& grad_out,
                                   const at::Tensor& lse, const at::Tensor& attr);

#ifdef ROBUSTOPS_WITH_CUDA
void pixel_softmax_kl_cuda(at::Tensor& out, at::Tensor& lse, const at::Tensor& attr);
void pixel_softmax_kl_backward_cuda(at::Tensor& grad_s, const at::Tensor& grad_out,
                                    const at::Tensor& lse, const at::Tensor& attr);
#endif

}  // namespace robustops
