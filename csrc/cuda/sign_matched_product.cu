// CUDA kernels of sign_matched_product: the math of kernels/sign_matched_product.h,
// launched on the current stream. Forward: one block per sample, CUB block sum;
// backward: a grid-stride elementwise loop. Includes are kept minimal.
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cub/block/block_reduce.cuh>

#include <kernels/sign_matched_product.h>

#include "sign_matched_product.h"
#include "cuda/grid_blocks.cuh"

#include <torch/library.h>

namespace robustops {
namespace {

using namespace kernels;

constexpr int kThreads = 256;

template <typename scalar_t, typename opmath_t>
__global__ void smp_fwd_kernel(scalar_t* __restrict__ out, const scalar_t* __restrict__ b,
                               const scalar_t* __restrict__ d, int64_t n) {
  using BlockReduce = cub::BlockReduce<opmath_t, kThreads>;
  __shared__ typename BlockReduce::TempStorage tmp;
  const int64_t off = static_cast<int64_t>(blockIdx.x) * n;
  opmath_t acc = 0;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) {
    acc += smp_value<opmath_t>(static_cast<opmath_t>(b[off + i]), static_cast<opmath_t>(d[off + i]));
  }
  const opmath_t total = BlockReduce(tmp).Sum(acc);
  if (threadIdx.x == 0) out[blockIdx.x] = static_cast<scalar_t>(total);
}

template <typename scalar_t, typename opmath_t>
__global__ void smp_bwd_kernel(scalar_t* __restrict__ gb, scalar_t* __restrict__ gd,
                               const scalar_t* __restrict__ go, const scalar_t* __restrict__ b,
                               const scalar_t* __restrict__ d, int64_t n, int64_t total) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += stride) {
    const opmath_t g = static_cast<opmath_t>(go[e / n]);
    const opmath_t bv = static_cast<opmath_t>(b[e]), dv = static_cast<opmath_t>(d[e]);
    gb[e] = static_cast<scalar_t>(smp_grad_b<opmath_t>(bv, dv, g));
    gd[e] = static_cast<scalar_t>(smp_grad_d<opmath_t>(bv, dv, g));
  }
}

}  // namespace

void sign_matched_product_cuda(at::Tensor& out, const at::Tensor& b, const at::Tensor& d) {
  const int64_t rows = b.size(0), n = b.size(1);
  if (rows == 0) return;
  c10::cuda::CUDAGuard guard(b.device());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(b.device().index());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, b.scalar_type(),
                                  "sign_matched_product_cuda", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    smp_fwd_kernel<scalar_t, opmath_t><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(
        out.mutable_data_ptr<scalar_t>(), b.const_data_ptr<scalar_t>(),
        d.const_data_ptr<scalar_t>(), n);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void sign_matched_product_backward_cuda(at::Tensor& grad_b, at::Tensor& grad_d,
                                        const at::Tensor& grad_out, const at::Tensor& b,
                                        const at::Tensor& d) {
  const int64_t rows = b.size(0), n = b.size(1), total = rows * n;
  if (total == 0) return;
  c10::cuda::CUDAGuard guard(b.device());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(b.device().index());
  const unsigned blocks = grid_blocks(total, kThreads, 65535 * 8);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, b.scalar_type(),
                                  "sign_matched_product_backward_cuda", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    smp_bwd_kernel<scalar_t, opmath_t><<<blocks, kThreads, 0, stream>>>(
        grad_b.mutable_data_ptr<scalar_t>(), grad_d.mutable_data_ptr<scalar_t>(),
        grad_out.const_data_ptr<scalar_t>(), b.const_data_ptr<scalar_t>(),
        d.const_data_ptr<scalar_t>(), n, total);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

TORCH_LIBRARY_IMPL(robustops, CUDA, m) {
  m.impl("sign_matched_product", TORCH_FN(sign_matched_product_op<&sign_matched_product_cuda>));
  m.impl("sign_matched_product_backward",
         TORCH_FN(sign_matched_product_backward_op<&sign_matched_product_backward_cuda>));
}

}  // namespace robustops
