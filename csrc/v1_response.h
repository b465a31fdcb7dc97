// Host entry points of the v1_response op: the device kernels (csrc/cpu, csrc/cuda) and
// what csrc/ops/v1_response.cpp shares with them (checks, layout handling).
//
// Kernel contract (established by v1_response_op / v1_response_backward_op, not
// checked by the kernels):
//   q0 (B, S + Cc, H, W), q1 (B, Cc, H, W), out/grad_out/grad_q0 like q0, grad_q1
//   like q1: one floating dtype, one device, all contiguous NCHW
//   (channels_last = false) or all channels_last (channels_last = true).
//   index: (B,) int64 contiguous global sample indices, read only when noise is on;
//     undefined: sample b has index b.
//   base1/base2: counter_rng stream keys of the noise normals (kernels/counter_rng.h).
// Compute type: float32, or float64 for float64 tensors (half/bfloat16 compute in float).
#pragma once
#include <ATen/core/Tensor.h>
#include <stdint.h>

#include <optional>
#include <tuple>

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

// The device kernels (v1_response_cpu / v1_response_cuda and their backward).
using V1ResponseKernel = void (*)(at::Tensor& out, const at::Tensor& q0, const at::Tensor& q1,
                                  const at::Tensor& index, const V1Params& p);
using V1ResponseBackwardKernel = void (*)(at::Tensor& grad_q0, at::Tensor& grad_q1,
                                          const at::Tensor& grad_out, const at::Tensor& q0,
                                          const at::Tensor& q1, const at::Tensor& index,
                                          const V1Params& p);

// Check the arguments (the messages of robustops/ops/v1_response.py), give `kernel`
// operands in one layout it walks (copies only when they differ) and run it.
at::Tensor v1_response_run(const at::Tensor& q0, const at::Tensor& q1,
                           const std::optional<at::Tensor>& index, double k_exc,
                           double noise_scale, double noise_level, bool noise, int64_t seed,
                           V1ResponseKernel kernel);
std::tuple<at::Tensor, at::Tensor> v1_response_backward_run(
    const at::Tensor& grad_out, const at::Tensor& q0, const at::Tensor& q1,
    const std::optional<at::Tensor>& index, double k_exc, double noise_scale,
    double noise_level, bool noise, int64_t seed, V1ResponseBackwardKernel kernel);

// The ops' kernels for one dispatch key, over that device's kernels.
template <V1ResponseKernel kernel>
at::Tensor v1_response_op(const at::Tensor& q0, const at::Tensor& q1,
                          const std::optional<at::Tensor>& index, double k_exc,
                          double noise_scale, double noise_level, bool noise, int64_t seed) {
  return v1_response_run(q0, q1, index, k_exc, noise_scale, noise_level, noise, seed, kernel);
}

template <V1ResponseBackwardKernel kernel>
std::tuple<at::Tensor, at::Tensor> v1_response_backward_op(
    const at::Tensor& grad_out, const at::Tensor& q0, const at::Tensor& q1,
    const std::optional<at::Tensor>& index, double k_exc, double noise_scale,
    double noise_level, bool noise, int64_t seed) {
  return v1_response_backward_run(grad_out, q0, q1, index, k_exc, noise_scale, noise_level,
                                  noise, seed, kernel);
}

#ifdef ROBUSTOPS_WITH_CUDA
void v1_response_cuda(at::Tensor& out, const at::Tensor& q0, const at::Tensor& q1,
                      const at::Tensor& index, const V1Params& p);
void v1_response_backward_cuda(at::Tensor& grad_q0, at::Tensor& grad_q1,
                               const at::Tensor& grad_out, const at::Tensor& q0,
                               const at::Tensor& q1, const at::Tensor& index,
                               const V1Params& p);
#endif

}  // namespace robustops
