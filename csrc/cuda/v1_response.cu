// CUDA kernels of v1_response: the math of kernels/v1_response.h, launched on the
// current stream. Grid-stride loops over q0's elements in memory order; each thread
// finds its (sample, channel, pixel) and the logical noise offset c*H*W + h*W + w.
// Includes are kept minimal (no torch/extension.h) so this file compiles in seconds.
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <kernels/counter_rng.h>
#include <kernels/v1_response.h>

#include "v1_response.h"

namespace robustops {
namespace {

using namespace kernels;

constexpr int kThreads = 256;

// Where element i of q0 (memory order) lives: sample b, channel c, pixel p, and the
// offset of its quadrature partner in q1 (meaningful for complex channels only).
struct Loc {
  int64_t b, c, p, off1;
};

template <bool kChannelsLast>
__device__ __forceinline__ Loc locate(int64_t i, int64_t c0, int64_t cc, int64_t hw,
                                      int64_t simple) {
  Loc l;
  const int64_t per = c0 * hw;
  l.b = i / per;
  const int64_t rem = i - l.b * per;
  if (kChannelsLast) {
    l.p = rem / c0;
    l.c = rem - l.p * c0;
    l.off1 = (l.b * hw + l.p) * cc + (l.c - simple);
  } else {
    l.c = rem / hw;
    l.p = rem - l.c * hw;
    l.off1 = (l.b * cc + (l.c - simple)) * hw + l.p;
  }
  return l;
}

template <typename opmath_t>
__device__ __forceinline__ opmath_t noise_normal(const int64_t* index, const Loc& l, int64_t hw,
                                                 uint32_t base1, uint32_t base2) {
  const int64_t idx = index[l.b];
  return static_cast<opmath_t>(
      rng_normal(rng_row(base1, idx), rng_row(base2, idx), l.c * hw + l.p));
}

template <typename scalar_t, typename opmath_t, bool kChannelsLast, bool kNoise>
__global__ void v1_fwd_kernel(scalar_t* __restrict__ out, const scalar_t* __restrict__ q0,
                              const scalar_t* __restrict__ q1, const int64_t* __restrict__ index,
                              int64_t total, int64_t c0, int64_t cc, int64_t hw, int64_t simple,
                              opmath_t k, opmath_t s, opmath_t lv, uint32_t base1,
                              uint32_t base2) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    const Loc l = locate<kChannelsLast>(i, c0, cc, hw, simple);
    const opmath_t a = static_cast<opmath_t>(q0[i]);
    opmath_t x = l.c < simple
                     ? v1_simple<opmath_t>(a, k)
                     : v1_complex<opmath_t>(a, static_cast<opmath_t>(q1[l.off1]), k);
    if (kNoise) x = v1_noise<opmath_t>(x, noise_normal<opmath_t>(index, l, hw, base1, base2), s, lv);
    out[i] = static_cast<scalar_t>(x);
  }
}

template <typename scalar_t, typename opmath_t, bool kChannelsLast, bool kNoise>
__global__ void v1_bwd_kernel(scalar_t* __restrict__ gq0, scalar_t* __restrict__ gq1,
                              const scalar_t* __restrict__ go, const scalar_t* __restrict__ q0,
                              const scalar_t* __restrict__ q1, const int64_t* __restrict__ index,
                              int64_t total, int64_t c0, int64_t cc, int64_t hw, int64_t simple,
                              opmath_t k, opmath_t s, opmath_t lv, uint32_t base1,
                              uint32_t base2) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    const Loc l = locate<kChannelsLast>(i, c0, cc, hw, simple);
    const opmath_t a = static_cast<opmath_t>(q0[i]);
    opmath_t g = static_cast<opmath_t>(go[i]);
    if (l.c < simple) {
      if (kNoise) {
        g *= v1_noise_grad<opmath_t>(v1_simple<opmath_t>(a, k),
                                     noise_normal<opmath_t>(index, l, hw, base1, base2), s, lv);
      }
      gq0[i] = static_cast<scalar_t>(v1_simple_grad<opmath_t>(a, k, g));
    } else {
      const opmath_t b = static_cast<opmath_t>(q1[l.off1]);
      if (kNoise) {
        g *= v1_noise_grad<opmath_t>(v1_complex<opmath_t>(a, b, k),
                                     noise_normal<opmath_t>(index, l, hw, base1, base2), s, lv);
      }
      const opmath_t f = v1_complex_grad_factor<opmath_t>(a, b, k, g);
      gq0[i] = static_cast<scalar_t>(f * a);
      gq1[l.off1] = static_cast<scalar_t>(f * b);
    }
  }
}

// Calls fn(std::integral_constant<bool, cl>, std::integral_constant<bool, noise>).
template <typename Fn>
void dispatch_flags(bool channels_last, bool noise, Fn fn) {
  if (channels_last) {
    if (noise) fn(std::true_type{}, std::true_type{});
    else fn(std::true_type{}, std::false_type{});
  } else {
    if (noise) fn(std::false_type{}, std::true_type{});
    else fn(std::false_type{}, std::false_type{});
  }
}

unsigned blocks_for(int64_t total) {
  return static_cast<unsigned>(std::min<int64_t>((total + kThreads - 1) / kThreads, 65535 * 8));
}

}  // namespace

void v1_response_cuda(at::Tensor& out, const at::Tensor& q0, const at::Tensor& q1,
                      const at::Tensor& index, const V1Params& p) {
  const int64_t total = q0.numel();
  if (total == 0) return;
  const int64_t c0 = q0.size(1), cc = c0 - p.simple, hw = q0.size(2) * q0.size(3);
  c10::cuda::CUDAGuard guard(q0.device());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(q0.device().index());
  const int64_t* idx = p.noise ? index.const_data_ptr<int64_t>() : nullptr;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, q0.scalar_type(), "v1_response_cuda",
                                  [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const scalar_t* a = q0.const_data_ptr<scalar_t>();
    const scalar_t* b = cc > 0 ? q1.const_data_ptr<scalar_t>() : a;
    dispatch_flags(p.channels_last, p.noise, [&](auto cl, auto noise) {
      v1_fwd_kernel<scalar_t, opmath_t, decltype(cl)::value, decltype(noise)::value>
          <<<blocks_for(total), kThreads, 0, stream>>>(
              out.mutable_data_ptr<scalar_t>(), a, b, idx, total, c0, cc, hw, p.simple,
              static_cast<opmath_t>(p.k_exc), static_cast<opmath_t>(p.noise_scale),
              static_cast<opmath_t>(p.noise_level), p.base1, p.base2);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
}

void v1_response_backward_cuda(at::Tensor& grad_q0, at::Tensor& grad_q1,
                               const at::Tensor& grad_out, const at::Tensor& q0,
                               const at::Tensor& q1, const at::Tensor& index,
                               const V1Params& p) {
  const int64_t total = q0.numel();
  if (total == 0) return;
  const int64_t c0 = q0.size(1), cc = c0 - p.simple, hw = q0.size(2) * q0.size(3);
  c10::cuda::CUDAGuard guard(q0.device());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(q0.device().index());
  const int64_t* idx = p.noise ? index.const_data_ptr<int64_t>() : nullptr;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, q0.scalar_type(),
                                  "v1_response_backward_cuda", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    scalar_t* ga = grad_q0.mutable_data_ptr<scalar_t>();
    scalar_t* gb = cc > 0 ? grad_q1.mutable_data_ptr<scalar_t>() : ga;
    const scalar_t* a = q0.const_data_ptr<scalar_t>();
    const scalar_t* b = cc > 0 ? q1.const_data_ptr<scalar_t>() : a;
    dispatch_flags(p.channels_last, p.noise, [&](auto cl, auto noise) {
      v1_bwd_kernel<scalar_t, opmath_t, decltype(cl)::value, decltype(noise)::value>
          <<<blocks_for(total), kThreads, 0, stream>>>(
              ga, gb, grad_out.const_data_ptr<scalar_t>(), a, b, idx, total, c0, cc, hw,
              p.simple, static_cast<opmath_t>(p.k_exc), static_cast<opmath_t>(p.noise_scale),
              static_cast<opmath_t>(p.noise_level), p.base1, p.base2);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
}

}  // namespace robustops
