// Host entry points of the pixel_softmax_kl op: the device kernels (csrc/cpu, csrc/cuda)
// and what csrc/ops/pixel_softmax_kl.cpp shares with them (checks, layout).
//
// Kernel contract (established by the runners below, not checked by the kernels):
//   attr (B, C, N) contiguous (N = H*W pixels), one floating dtype; out (B,) of attr's
//   dtype and lse (B,) of the compute type, contiguous; grad_out (B,) of attr's dtype;
//   grad_s (B, N) contiguous of attr's dtype: the gradient of every channel.
// Compute type: float32, or float64 for float64 tensors (half/bfloat16 in float).
#pragma once
#include <ATen/core/Tensor.h>

#include <tuple>

namespace robustops {

// out = KL(U || softmax(sum_c attr)), lse = logsumexp(sum_c attr), per sample.
void pixel_softmax_kl_cpu(at::Tensor& out, at::Tensor& lse, const at::Tensor& attr);
// grad_s[b, i] = grad_out[b] (exp(s_bi - lse_b) - 1/N).
void pixel_softmax_kl_backward_cpu(at::Tensor& grad_s, const at::Tensor& grad_out,
                                   const at::Tensor& lse, const at::Tensor& attr);

// Device kernels (pixel_softmax_kl[_backward]_cpu / _cuda).
using PskKernel = void (*)(at::Tensor& out, at::Tensor& lse, const at::Tensor& attr);
using PskBackwardKernel = void (*)(at::Tensor& grad_s, const at::Tensor& grad_out,
                                   const at::Tensor& lse, const at::Tensor& attr);

// Every argument check of the op, with the messages of robustops/ops/pixel_softmax_kl.py.
void check_pixel_softmax_kl_args(const at::Tensor& attr);

// Check attr (B, C, *pixels), view it as contiguous (B, C, N) and run `kernel`:
// (out (B,), lse (B,) in the compute type).
std::tuple<at::Tensor, at::Tensor> pixel_softmax_kl_run(const at::Tensor& attr, PskKernel kernel);
// The same for the backward: the gradient of the channel sum, (B, *pixels) contiguous.
at::Tensor pixel_softmax_kl_backward_run(const at::Tensor& grad_out, const at::Tensor& lse,
                                         const at::Tensor& attr, PskBackwardKernel kernel);

// The op's kernels for one dispatch key, over that device's kernels.
template <PskKernel kernel>
std::tuple<at::Tensor, at::Tensor> pixel_softmax_kl_op(const at::Tensor& attr) {
  return pixel_softmax_kl_run(attr, kernel);
}

template <PskBackwardKernel kernel>
at::Tensor pixel_softmax_kl_backward_op(const at::Tensor& grad_out, const at::Tensor& lse,
                                        const at::Tensor& attr) {
  return pixel_softmax_kl_backward_run(grad_out, lse, attr, kernel);
}

#ifdef ROBUSTOPS_WITH_CUDA
void pixel_softmax_kl_cuda(at::Tensor& out, at::Tensor& lse, const at::Tensor& attr);
void pixel_softmax_kl_backward_cuda(at::Tensor& grad_s, const at::Tensor& grad_out,
                                    const at::Tensor& lse, const at::Tensor& attr);
#endif

}  // namespace robustops
