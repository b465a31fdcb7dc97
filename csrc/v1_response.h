// Host entry points of the v1_response op (bound in csrc/module.cpp).
//
// Contract (checked in robustops/ops/v1_response.py, not here):
//   q0 (B, S + Cc, H, W), q1 (B, Cc, H, W), out/grad_out/grad_q0 like q0, grad_q1
//   like q1: one floating dtype, one device, all contiguous NCHW
//   (channels_last = false) or all channels_last (channels_last = true).
//   index: (B,) int64 contiguous global sample indices (read only when noise is on).
//   base1/base2: counter_rng stream keys of the noise normals (kernels/counter_rng.h).
// Compute type: float32, or float64 for float64 tensors (half/bfloat16 compute in float).
#pragma once
#include <ATen/core/Tensor.h>
#include <stdint.h>

namespace robustops {

// Scalars shared by forward and backward.
struct V1Params {
  int64_t simple;  // S: channels [0, S) of q0 are simple cells, [S, C0) complex
  double k_exc, noise_scale, noise_level;
  bool noise;
  uint32_t base1, base2;
  bool channels_last;
};

void v1_response_cpu(at::Tensor& out, const at::Tensor& q0, const at::Tensor& q1,
                     const at::Tensor& index, const V1Params& p);
void v1_response_backward_cpu(at::Tensor& grad_q0, at::Tensor& grad_q1,
                              const at::Tensor& grad_out, const at::Tensor& q0,
                              const at::Tensor& q1, const at::Tensor& index, const V1Params& p);

#ifdef ROBUSTOPS_WITH_CUDA
void v1_response_cuda(at::Tensor& out, const at::Tensor& q0, const at::Tensor& q1,
                      const at::Tensor& index, const V1Params& p);
void v1_response_backward_cuda(at::Tensor& grad_q0, at::Tensor& grad_q1,
                               const at::Tensor& grad_out, const at::Tensor& q0,
                               const at::Tensor& q1, const at::Tensor& index,
                               const V1Params& p);
#endif

}  // namespace robustops
