// CUDA kernels of group_inhibition_mask: the math of kernels/group_inhibition_mask.h,
// five small launches on the current stream and no host synchronisation.
//   1. w[b, c]     channel weights (one block per channel, CUB block sum over H*W)
//   2. s[b, g]     group weights (one thread per sample, channels in order)
//   3. m[b, g, :]  group maps (one thread per (sample, pixel): it owns its column of
//                  the K maps, so the channel loop needs no atomics and is deterministic)
//   4. mu, sd      per group (one block per (sample, group), CUB block sums)
//   5. out         the mask, gathered per channel (grid-stride)
// Includes are kept minimal (no torch/extension.h) so this file compiles in seconds.
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cub/block/block_reduce.cuh>

#include <kernels/group_inhibition_mask.h>

#include "group_inhibition_mask.h"
#include "cuda/grid_blocks.cuh"

#include <torch/library.h>

namespace robustops {
namespace {

using namespace kernels;

constexpr int kThreads = 256;
constexpr int kReduceThreads = 128;

template <typename T>
__global__ void channel_weight_kernel(T* w, const T* g, int64_t rows, int64_t n) {
  using BlockReduce = cub::BlockReduce<T, kReduceThreads>;
  __shared__ typename BlockReduce::TempStorage tmp;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* gr = g + r * n;
    T acc = T(0);
    for (int64_t i = threadIdx.x; i < n; i += kReduceThreads) acc += gr[i];
    const T total = BlockReduce(tmp).Sum(acc);
    if (threadIdx.x == 0) w[r] = total / static_cast<T>(n);
    __syncthreads();  // tmp is reused by the next row
  }
}

template <typename T>
__global__ void group_weight_kernel(T* s, const T* w, const int64_t* a, int64_t batch,
                                    int64_t channels, int64_t groups) {
  for (int64_t b = blockIdx.x * blockDim.x + threadIdx.x; b < batch;
       b += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    T* sb = s + b * groups;
    for (int64_t k = 0; k < groups; ++k) sb[k] = T(0);
    for (int64_t c = 0; c < channels; ++c) {
      const int64_t k = a[b * channels + c];
      if (gim_valid_label(k, groups)) sb[k] += w[b * channels + c];
    }
  }
}

template <typename T>
__global__ void group_map_kernel(T* m, const T* x, const T* w, const int64_t* a, int64_t batch,
                                 int64_t channels, int64_t n, int64_t groups) {
  const int64_t total = batch * n;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = t / n, i = t - b * n;
    T* mb = m + b * groups * n + i;
    for (int64_t k = 0; k < groups; ++k) mb[k * n] = T(0);
    const T* xb = x + b * channels * n + i;
    for (int64_t c = 0; c < channels; ++c) {
      const int64_t k = a[b * channels + c];
      if (gim_valid_label(k, groups)) mb[k * n] += w[b * channels + c] * xb[c * n];
    }
  }
}

template <typename T>
__global__ void group_stats_kernel(T* mu, T* sd, const T* m, int64_t rows, int64_t n) {
  using BlockReduce = cub::BlockReduce<T, kReduceThreads>;
  __shared__ typename BlockReduce::TempStorage tmp;
  __shared__ T mean_shared;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* mr = m + r * n;
    T acc = T(0);
    for (int64_t i = threadIdx.x; i < n; i += kReduceThreads) acc += mr[i];
    const T total = BlockReduce(tmp).Sum(acc);
    if (threadIdx.x == 0) mean_shared = total / static_cast<T>(n);
    __syncthreads();
    const T mean = mean_shared;
    T dev = T(0);
    for (int64_t i = threadIdx.x; i < n; i += kReduceThreads) {
      const T d = mr[i] - mean;
      dev += d * d;
    }
    const T ss = BlockReduce(tmp).Sum(dev);
    if (threadIdx.x == 0) {
      mu[r] = mean;
      sd[r] = gim_std(ss, n);
    }
    __syncthreads();
  }
}

template <typename T>
__global__ void mask_kernel(T* out, const T* m, const T* mu, const T* sd, const T* s,
                            const int64_t* a, int64_t batch, int64_t channels, int64_t n,
                            int64_t groups) {
  const int64_t total = batch * channels * n;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = t / n, i = t - row * n;  // row = b * C + c
    const int64_t b = row / channels;
    const int64_t k = a[row];
    T v = T(1);
    if (gim_valid_label(k, groups)) {
      const int64_t g = b * groups + k;
      v = gim_mask_value(m[g * n + i], mu[g], sd[g], gim_inhibits(s[g]));
    }
    out[t] = v;
  }
}

}  // namespace

void group_inhibition_mask_cuda(at::Tensor& out, const at::Tensor& features,
                                const at::Tensor& grad, const at::Tensor& assignment,
                                int64_t num_groups) {
  const int64_t B = features.size(0), C = features.size(1);
  const int64_t N = features.size(2) * features.size(3);
  const int64_t K = num_groups;
  if (out.numel() == 0) return;
  c10::cuda::CUDAGuard guard(features.device());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(features.device().index());
  const auto opts = features.options();
  at::Tensor w = at::empty({B * C}, opts);
  at::Tensor s = at::empty({B * K}, opts);
  at::Tensor m = at::empty({B * K * N}, opts);
  at::Tensor mu = at::empty({B * K}, opts);
  at::Tensor sd = at::empty({B * K}, opts);
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "group_inhibition_mask_cuda", [&] {
    using T = scalar_t;
    const int64_t* a = assignment.const_data_ptr<int64_t>();
    channel_weight_kernel<T><<<grid_blocks(B * C, 1), kReduceThreads, 0, stream>>>(
        w.mutable_data_ptr<T>(), grad.const_data_ptr<T>(), B * C, N);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    group_weight_kernel<T><<<grid_blocks(B, kThreads), kThreads, 0, stream>>>(
        s.mutable_data_ptr<T>(), w.const_data_ptr<T>(), a, B, C, K);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    group_map_kernel<T><<<grid_blocks(B * N, kThreads), kThreads, 0, stream>>>(
        m.mutable_data_ptr<T>(), features.const_data_ptr<T>(), w.const_data_ptr<T>(), a, B, C,
        N, K);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    group_stats_kernel<T><<<grid_blocks(B * K, 1), kReduceThreads, 0, stream>>>(
        mu.mutable_data_ptr<T>(), sd.mutable_data_ptr<T>(), m.const_data_ptr<T>(), B * K, N);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    mask_kernel<T><<<grid_blocks(B * C * N, kThreads), kThreads, 0, stream>>>(
        out.mutable_data_ptr<T>(), m.const_data_ptr<T>(), mu.const_data_ptr<T>(),
        sd.const_data_ptr<T>(), s.const_data_ptr<T>(), a, B, C, N, K);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

TORCH_LIBRARY_IMPL(robustops, CUDA, m) {
  m.impl("group_inhibition_mask",
         TORCH_FN((group_inhibition_mask_op<&group_inhibition_mask_cuda, false>)));
}

}  // namespace robustops
