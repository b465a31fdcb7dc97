// CUDA kernels of gabor_bank: the math of kernels/gabor_bank.h, one block per
// filter, launched on the current stream. Includes are kept minimal (no
// torch/extension.h) so this file compiles in seconds.
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cub/block/block_reduce.cuh>

#include <kernels/gabor_bank.h>

#include "gabor_bank.h"

#include <torch/library.h>

namespace robustops {
namespace {

using namespace kernels;

constexpr int kThreads = 256;

// A bank has at most a few thousand filters of k*k <= ~4000 elements: one
// block per filter keeps the per-filter constants in registers and lets the
// backward reduce its five sums inside the block.
template <typename scalar_t>
__global__ void gabor_bank_kernel(scalar_t* out, const scalar_t* f, const scalar_t* sx,
                                  const scalar_t* sy, const scalar_t* th, const scalar_t* ph,
                                  int64_t k) {
  const int64_t i = blockIdx.x;
  const int64_t kk = k * k, w = k / 2;
  const GaborCoeffs<double> c = gabor_coeffs<double>(f[i], sx[i], sy[i], th[i], ph[i]);
  scalar_t* oi = out + i * kk;
  for (int64_t j = threadIdx.x; j < kk; j += kThreads) {
    const int64_t r = j / k;
    oi[j] = static_cast<scalar_t>(
        gabor_element(c, gabor_offset<double>(r, w), gabor_offset<double>(j - r * k, w)));
  }
}

template <typename scalar_t>
__global__ void gabor_bank_backward_kernel(const scalar_t* go, const scalar_t* f,
                                           const scalar_t* sx, const scalar_t* sy,
                                           const scalar_t* th, const scalar_t* ph, int64_t k,
                                           scalar_t* gf, scalar_t* gsx, scalar_t* gsy,
                                           scalar_t* gth, scalar_t* gph) {
  using BlockReduce = cub::BlockReduce<double, kThreads>;
  __shared__ typename BlockReduce::TempStorage tmp;
  const int64_t i = blockIdx.x;
  const int64_t kk = k * k, w = k / 2;
  const GaborCoeffs<double> c = gabor_coeffs<double>(f[i], sx[i], sy[i], th[i], ph[i]);
  const scalar_t* goi = go + i * kk;
  GaborGrad<double> acc{0, 0, 0, 0, 0};
  for (int64_t j = threadIdx.x; j < kk; j += kThreads) {
    const int64_t r = j / k;
    gabor_grad_accumulate(c, gabor_offset<double>(r, w), gabor_offset<double>(j - r * k, w),
                          static_cast<double>(goi[j]), acc);
  }
  // Five block sums through one temp storage: a barrier before each reuse.
  const double sums_in[5] = {acc.f, acc.sx, acc.sy, acc.theta, acc.phase};
  scalar_t* outs[5] = {gf, gsx, gsy, gth, gph};
#pragma unroll
  for (int q = 0; q < 5; ++q) {
    if (q > 0) __syncthreads();
    const double total = BlockReduce(tmp).Sum(sums_in[q]);
    if (threadIdx.x == 0) outs[q][i] = static_cast<scalar_t>(total);
  }
}

}  // namespace

void gabor_bank_cuda(at::Tensor& out, const at::Tensor& frequency, const at::Tensor& sigma_x,
                     const at::Tensor& sigma_y, const at::Tensor& theta, const at::Tensor& phase) {
  const int64_t n = out.size(0), k = out.size(1);
  if (out.numel() == 0) return;
  c10::cuda::CUDAGuard guard(out.device());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(out.device().index());
  AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "gabor_bank_cuda", [&] {
    gabor_bank_kernel<scalar_t><<<static_cast<unsigned>(n), kThreads, 0, stream>>>(
        out.mutable_data_ptr<scalar_t>(), frequency.const_data_ptr<scalar_t>(),
        sigma_x.const_data_ptr<scalar_t>(), sigma_y.const_data_ptr<scalar_t>(),
        theta.const_data_ptr<scalar_t>(), phase.const_data_ptr<scalar_t>(), k);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void gabor_bank_backward_cuda(const at::Tensor& grad_out, const at::Tensor& frequency,
                              const at::Tensor& sigma_x, const at::Tensor& sigma_y,
                              const at::Tensor& theta, const at::Tensor& phase,
                              at::Tensor& grad_frequency, at::Tensor& grad_sigma_x,
                              at::Tensor& grad_sigma_y, at::Tensor& grad_theta,
                              at::Tensor& grad_phase) {
  const int64_t n = grad_out.size(0), k = grad_out.size(1);
  if (n == 0) return;
  c10::cuda::CUDAGuard guard(grad_out.device());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(grad_out.device().index());
  AT_DISPATCH_FLOATING_TYPES(grad_out.scalar_type(), "gabor_bank_backward_cuda", [&] {
    gabor_bank_backward_kernel<scalar_t><<<static_cast<unsigned>(n), kThreads, 0, stream>>>(
        grad_out.const_data_ptr<scalar_t>(), frequency.const_data_ptr<scalar_t>(),
        sigma_x.const_data_ptr<scalar_t>(), sigma_y.const_data_ptr<scalar_t>(),
        theta.const_data_ptr<scalar_t>(), phase.const_data_ptr<scalar_t>(), k,
        grad_frequency.mutable_data_ptr<scalar_t>(), grad_sigma_x.mutable_data_ptr<scalar_t>(),
        grad_sigma_y.mutable_data_ptr<scalar_t>(), grad_theta.mutable_data_ptr<scalar_t>(),
        grad_phase.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

TORCH_LIBRARY_IMPL(robustops, CUDA, m) {
  m.impl("gabor_bank", TORCH_FN(gabor_bank_op<&gabor_bank_cuda>));
  m.impl("gabor_bank_backward", TORCH_FN(gabor_bank_backward_op<&gabor_bank_backward_cuda>));
}

}  // namespace robustops
