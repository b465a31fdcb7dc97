// CUDA kernels of v1_response: the math of kernels/v1_response.h, launched on the
// current stream. The noise comes in Box-Muller pairs (elements 2p, 2p + 1 of a
// sample's logical NCHW order share u1, u2: cosine and sine), so each thread takes
// one pair's two elements and draws the pair once (grid-stride over these units):
//   NCHW: unit (sample, pair p): elements j = 2p, 2p + 1, adjacent in memory.
//   channels_last: unit (sample, m, channel c), channel fastest (coalesced): pixels
//     pb, pb + 1 of channel c with pb = 2m - ((c*H*W) & 1), so c*H*W + pb is even; a
//     pixel outside [0, H*W) (its pair straddles two channels when H*W is odd) is
//     skipped: the neighbouring channel's unit handles it.
// The Box-Muller runs in the compute type (float for float/half/bfloat16: logf and
// sincospif; double for double). Includes are kept minimal (no torch/extension.h)
// so this file compiles in seconds.
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <kernels/counter_rng.h>
#include <kernels/v1_response.h>

#include "v1_response.h"
#include "cuda/grid_blocks.cuh"

#include <torch/library.h>

namespace robustops {
namespace {

using namespace kernels;

constexpr int kThreads = 256;

struct Shape {
  int64_t c0, cc, hw, simple;
};

// The two elements of unit u: sample b, pair p, and per element k its channel c[k],
// q0 offset i[k], q1 offset off1[k] (complex channels only) and validity.
struct Unit {
  int64_t b, p;
  int64_t c[2], i[2], off1[2];
  bool valid[2];
};

template <bool kChannelsLast>
__device__ __forceinline__ Unit unit_at(int64_t u, const Shape& sh) {
  Unit e;
  const int64_t per = sh.c0 * sh.hw;
  if (kChannelsLast) {
    const int64_t mh = (sh.hw + 1) / 2;
    e.b = u / (mh * sh.c0);
    const int64_t rem = u - e.b * (mh * sh.c0);
    const int64_t m = rem / sh.c0;
    const int64_t c = rem - m * sh.c0;
    const int64_t par = (c * sh.hw) & 1;
    e.p = (c * sh.hw - par) / 2 + m;
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      const int64_t pix = 2 * m - par + k;
      e.c[k] = c;
      e.valid[k] = pix >= 0 && pix < sh.hw;
      e.i[k] = e.b * per + pix * sh.c0 + c;
      e.off1[k] = (e.b * sh.hw + pix) * sh.cc + (c - sh.simple);
    }
  } else {
    const int64_t npp = (per + 1) / 2;
    e.b = u / npp;
    e.p = u - e.b * npp;
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      const int64_t j = 2 * e.p + k;
      const int64_t c = j / sh.hw;
      e.c[k] = c;
      e.valid[k] = j < per;
      e.i[k] = e.b * per + j;
      e.off1[k] = (e.b * sh.cc + (c - sh.simple)) * sh.hw + (j - c * sh.hw);
    }
  }
  return e;
}

// The unit's two normals n[0] (cosine, even j) and n[1] (sine, odd j).
template <typename opmath_t>
__device__ __forceinline__ void unit_normals(const int64_t* index, const Unit& e,
                                             uint32_t base1, uint32_t base2, opmath_t n[2]) {
  const int64_t idx = index != nullptr ? index[e.b] : e.b;  // no index: 0..B-1
  v1_noise_pair<opmath_t>(rng_row(base1, idx), rng_row(base2, idx),
                          static_cast<uint32_t>(e.p), &n[0], &n[1]);
}

template <typename scalar_t, typename opmath_t, bool kChannelsLast, bool kNoise>
__global__ void v1_fwd_kernel(scalar_t* __restrict__ out, const scalar_t* __restrict__ q0,
                              const scalar_t* __restrict__ q1, const int64_t* __restrict__ index,
                              int64_t units, Shape sh, opmath_t k, opmath_t s, opmath_t lv,
                              uint32_t base1, uint32_t base2) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t u = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; u < units;
       u += stride) {
    const Unit e = unit_at<kChannelsLast>(u, sh);
    opmath_t n[2] = {opmath_t(0), opmath_t(0)};
    if (kNoise) unit_normals<opmath_t>(index, e, base1, base2, n);
#pragma unroll
    for (int t = 0; t < 2; ++t) {
      if (!e.valid[t]) continue;
      const opmath_t a = static_cast<opmath_t>(q0[e.i[t]]);
      opmath_t x = e.c[t] < sh.simple
                       ? v1_simple<opmath_t>(a, k)
                       : v1_complex<opmath_t>(a, static_cast<opmath_t>(q1[e.off1[t]]), k);
      if (kNoise) x = v1_noise<opmath_t>(x, n[t], s, lv);
      out[e.i[t]] = static_cast<scalar_t>(x);
    }
  }
}

template <typename scalar_t, typename opmath_t, bool kChannelsLast, bool kNoise>
__global__ void v1_bwd_kernel(scalar_t* __restrict__ gq0, scalar_t* __restrict__ gq1,
                              const scalar_t* __restrict__ go, const scalar_t* __restrict__ q0,
                              const scalar_t* __restrict__ q1, const int64_t* __restrict__ index,
                              int64_t units, Shape sh, opmath_t k, opmath_t s, opmath_t lv,
                              uint32_t base1, uint32_t base2) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t u = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; u < units;
       u += stride) {
    const Unit e = unit_at<kChannelsLast>(u, sh);
    opmath_t n[2] = {opmath_t(0), opmath_t(0)};
    if (kNoise) unit_normals<opmath_t>(index, e, base1, base2, n);
#pragma unroll
    for (int t = 0; t < 2; ++t) {
      if (!e.valid[t]) continue;
      const int64_t i = e.i[t];
      const opmath_t a = static_cast<opmath_t>(q0[i]);
      opmath_t g = static_cast<opmath_t>(go[i]);
      if (e.c[t] < sh.simple) {
        if (kNoise) g *= v1_noise_grad<opmath_t>(v1_simple<opmath_t>(a, k), n[t], s, lv);
        gq0[i] = static_cast<scalar_t>(v1_simple_grad<opmath_t>(a, k, g));
      } else {
        const opmath_t b = static_cast<opmath_t>(q1[e.off1[t]]);
        if (kNoise) g *= v1_noise_grad<opmath_t>(v1_complex<opmath_t>(a, b, k), n[t], s, lv);
        const opmath_t f = v1_complex_grad_factor<opmath_t>(a, b, k, g);
        gq0[i] = static_cast<scalar_t>(f * a);
        gq1[e.off1[t]] = static_cast<scalar_t>(f * b);
      }
    }
  }
}

// Units of the walk: pairs of NCHW elements, or (sample, pixel pair, channel) triples.
int64_t unit_count(const at::Tensor& q0, bool channels_last) {
  const int64_t b = q0.size(0), c0 = q0.size(1), hw = q0.size(2) * q0.size(3);
  return channels_last ? b * c0 * ((hw + 1) / 2) : b * ((c0 * hw + 1) / 2);
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


}  // namespace

void v1_response_cuda(at::Tensor& out, const at::Tensor& q0, const at::Tensor& q1,
                      const at::Tensor& index, const V1Params& p) {
  if (q0.numel() == 0) return;
  const int64_t c0 = q0.size(1);
  const Shape sh{c0, c0 - p.simple, q0.size(2) * q0.size(3), p.simple};
  const int64_t units = unit_count(q0, p.channels_last);
  c10::cuda::CUDAGuard guard(q0.device());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(q0.device().index());
  const int64_t* idx = p.noise && index.defined() ? index.const_data_ptr<int64_t>() : nullptr;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, q0.scalar_type(), "v1_response_cuda",
                                  [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const scalar_t* a = q0.const_data_ptr<scalar_t>();
    const scalar_t* b = sh.cc > 0 ? q1.const_data_ptr<scalar_t>() : a;
    dispatch_flags(p.channels_last, p.noise, [&](auto cl, auto noise) {
      v1_fwd_kernel<scalar_t, opmath_t, decltype(cl)::value, decltype(noise)::value>
          <<<grid_blocks(units, kThreads, 65535 * 8), kThreads, 0, stream>>>(
              out.mutable_data_ptr<scalar_t>(), a, b, idx, units, sh,
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
  if (q0.numel() == 0) return;
  const int64_t c0 = q0.size(1);
  const Shape sh{c0, c0 - p.simple, q0.size(2) * q0.size(3), p.simple};
  const int64_t units = unit_count(q0, p.channels_last);
  c10::cuda::CUDAGuard guard(q0.device());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(q0.device().index());
  const int64_t* idx = p.noise && index.defined() ? index.const_data_ptr<int64_t>() : nullptr;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, q0.scalar_type(),
                                  "v1_response_backward_cuda", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    scalar_t* ga = grad_q0.mutable_data_ptr<scalar_t>();
    scalar_t* gb = sh.cc > 0 ? grad_q1.mutable_data_ptr<scalar_t>() : ga;
    const scalar_t* a = q0.const_data_ptr<scalar_t>();
    const scalar_t* b = sh.cc > 0 ? q1.const_data_ptr<scalar_t>() : a;
    dispatch_flags(p.channels_last, p.noise, [&](auto cl, auto noise) {
      v1_bwd_kernel<scalar_t, opmath_t, decltype(cl)::value, decltype(noise)::value>
          <<<grid_blocks(units, kThreads, 65535 * 8), kThreads, 0, stream>>>(
              ga, gb, grad_out.const_data_ptr<scalar_t>(), a, b, idx, units, sh,
              static_cast<opmath_t>(p.k_exc), static_cast<opmath_t>(p.noise_scale),
              static_cast<opmath_t>(p.noise_level), p.base1, p.base2);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
}

TORCH_LIBRARY_IMPL(robustops, CUDA, m) {
  m.impl("v1_response", TORCH_FN(v1_response_op<&v1_response_cuda>));
  m.impl("v1_response_backward",
         TORCH_FN(v1_response_backward_op<&v1_response_backward_cuda>));
}

}  // namespace robustops
