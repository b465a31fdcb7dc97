// CUDA kernels of pixel_softmax_kl: the math of kernels/pixel_softmax_kl.h, launched on
// the current stream. Forward: one block per sample, each pass re-summing the channels
// of its pixels (C is 1 or 3 for images) rather than storing s; CUB block reductions.
// Backward: elementwise over the B*N pixels with the saved logsumexp. Includes are
// kept minimal (no torch/extension.h).
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cub/block/block_reduce.cuh>

#include <kernels/pixel_softmax_kl.h>

#include "pixel_softmax_kl.h"
#include "cuda/grid_blocks.cuh"

#include <torch/library.h>

namespace robustops {
namespace {

using namespace kernels;

constexpr int kThreads = 256;

struct MaxOp {
  template <typename T>
  __device__ __forceinline__ T operator()(const T& a, const T& b) const {
    return a > b ? a : b;
  }
};

template <typename scalar_t, typename opmath_t>
__device__ __forceinline__ opmath_t channel_sum(const scalar_t* a, int64_t c, int64_t n,
                                                int64_t i) {
  opmath_t s = 0;
  for (int64_t ch = 0; ch < c; ++ch) s += static_cast<opmath_t>(a[ch * n + i]);
  return s;
}

// (logsumexp, sum) of one sample's channel sums, known to every thread of the block.
template <typename scalar_t, typename opmath_t>
__device__ void row_stats(const scalar_t* a, int64_t c, int64_t n, opmath_t* lse_out,
                          opmath_t* sum_out) {
  using BlockReduce = cub::BlockReduce<opmath_t, kThreads>;
  __shared__ typename BlockReduce::TempStorage tmp;
  __shared__ opmath_t shared[3];
  opmath_t mx = -INFINITY, sum = 0;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) {
    const opmath_t s = channel_sum<scalar_t, opmath_t>(a, c, n, i);
    mx = s > mx ? s : mx;
    sum += s;
  }
  const opmath_t bmx = BlockReduce(tmp).Reduce(mx, MaxOp());
  if (threadIdx.x == 0) shared[0] = bmx;
  __syncthreads();
  const opmath_t bsum = BlockReduce(tmp).Sum(sum);
  if (threadIdx.x == 0) shared[2] = bsum;
  __syncthreads();
  const opmath_t m = shared[0];
  opmath_t se = 0;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) {
    se += psk_exp_term<opmath_t>(channel_sum<scalar_t, opmath_t>(a, c, n, i), m);
  }
  const opmath_t bse = BlockReduce(tmp).Sum(se);
  if (threadIdx.x == 0) shared[1] = bse;
  __syncthreads();
  *lse_out = psk_lse<opmath_t>(shared[0], shared[1]);
  *sum_out = shared[2];
}

template <typename scalar_t, typename opmath_t>
__global__ void psk_fwd_kernel(scalar_t* __restrict__ out, opmath_t* __restrict__ lse,
                               const scalar_t* __restrict__ attr, int64_t c, int64_t n) {
  const scalar_t* a = attr + static_cast<int64_t>(blockIdx.x) * c * n;
  opmath_t l, sum;
  row_stats<scalar_t, opmath_t>(a, c, n, &l, &sum);
  if (threadIdx.x == 0) {
    lse[blockIdx.x] = l;
    out[blockIdx.x] = static_cast<scalar_t>(psk_value<opmath_t>(l, sum, static_cast<opmath_t>(n)));
  }
}

// Elementwise over the B*N pixels: no reduction, the logsumexp was saved.
template <typename scalar_t, typename opmath_t>
__global__ void psk_bwd_kernel(scalar_t* __restrict__ grad_s, const scalar_t* __restrict__ grad_out,
                               const opmath_t* __restrict__ lse,
                               const scalar_t* __restrict__ attr, int64_t c, int64_t n,
                               int64_t total) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const opmath_t inv_n = opmath_t(1) / static_cast<opmath_t>(n);
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += stride) {
    const int64_t row = e / n, i = e - row * n;
    const opmath_t s = channel_sum<scalar_t, opmath_t>(attr + row * c * n, c, n, i);
    grad_s[e] = static_cast<scalar_t>(
        psk_grad<opmath_t>(s, lse[row], inv_n, static_cast<opmath_t>(grad_out[row])));
  }
}

}  // namespace

void pixel_softmax_kl_cuda(at::Tensor& out, at::Tensor& lse, const at::Tensor& attr) {
  const int64_t b = attr.size(0), c = attr.size(1), n = attr.size(2);
  if (b == 0) return;
  c10::cuda::CUDAGuard guard(attr.device());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(attr.device().index());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, attr.scalar_type(),
                                  "pixel_softmax_kl_cuda", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    psk_fwd_kernel<scalar_t, opmath_t><<<static_cast<unsigned>(b), kThreads, 0, stream>>>(
        out.mutable_data_ptr<scalar_t>(), lse.mutable_data_ptr<opmath_t>(),
        attr.const_data_ptr<scalar_t>(), c, n);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void pixel_softmax_kl_backward_cuda(at::Tensor& grad_s, const at::Tensor& grad_out,
                                    const at::Tensor& lse, const at::Tensor& attr) {
  const int64_t b = attr.size(0), c = attr.size(1), n = attr.size(2), total = b * n;
  if (total == 0) return;
  c10::cuda::CUDAGuard guard(attr.device());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(attr.device().index());
  const unsigned blocks = grid_blocks(total, kThreads, 65535 * 8);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, attr.scalar_type(),
                                  "pixel_softmax_kl_backward_cuda", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    psk_bwd_kernel<scalar_t, opmath_t><<<blocks, kThreads, 0, stream>>>(
        grad_s.mutable_data_ptr<scalar_t>(), grad_out.const_data_ptr<scalar_t>(),
        lse.const_data_ptr<opmath_t>(), attr.const_data_ptr<scalar_t>(), c, n, total);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

TORCH_LIBRARY_IMPL(robustops, CUDA, m) {
  m.impl("pixel_softmax_kl", TORCH_FN(pixel_softmax_kl_op<&pixel_softmax_kl_cuda>));
  m.impl("pixel_softmax_kl_backward",
         TORCH_FN(pixel_softmax_kl_backward_op<&pixel_softmax_kl_backward_cuda>));
}

}  // namespace robustops
