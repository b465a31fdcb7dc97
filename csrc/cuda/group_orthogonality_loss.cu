// CUDA kernels of group_orthogonality_loss: the math of kernels/group_orthogonality_loss.h,
// small launches on the current stream, no host synchronisation (grad_out is read on
// the device), deterministic (no floating-point atomics).
//   counts[b, g]    one thread per sample, channels in order
//   mu[b, g, :]     one thread per (sample, pixel), owning its column of the K means
//   gram[b, i, j]   one block per (sample, i < j), CUB block sum over H*W
//   forward:  one block sums the per-sample terms in batch order
//   backward: dmu[b, g, :] per (sample, group, pixel), then dF gathered per channel
// Includes are kept minimal (no torch/extension.h) so this file compiles in seconds.
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cub/block/block_reduce.cuh>

#include <kernels/group_inhibition_mask.h>
#include <kernels/group_orthogonality_loss.h>

#include "group_orthogonality_loss.h"
#include "cuda/grid_blocks.cuh"

#include <torch/library.h>

namespace robustops {
namespace {

using namespace kernels;

constexpr int kThreads = 256;
constexpr int kReduceThreads = 128;

__global__ void counts_kernel(int64_t* count, const int64_t* a, int64_t batch, int64_t channels,
                              int64_t groups) {
  for (int64_t b = blockIdx.x * blockDim.x + threadIdx.x; b < batch;
       b += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t* cb = count + b * groups;
    for (int64_t k = 0; k < groups; ++k) cb[k] = 0;
    for (int64_t c = 0; c < channels; ++c) {
      const int64_t k = a[b * channels + c];
      if (gim_valid_label(k, groups)) ++cb[k];
    }
  }
}

template <typename T>
__global__ void group_mean_kernel(T* mu, const T* x, const int64_t* a, const int64_t* count,
                                  int64_t batch, int64_t channels, int64_t n, int64_t groups) {
  const int64_t total = batch * n;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = t / n, i = t - b * n;
    T* mb = mu + b * groups * n + i;
    for (int64_t k = 0; k < groups; ++k) mb[k * n] = T(0);
    const T* xb = x + b * channels * n + i;
    for (int64_t c = 0; c < channels; ++c) {
      const int64_t k = a[b * channels + c];
      if (gim_valid_label(k, groups)) mb[k * n] += xb[c * n];
    }
    for (int64_t k = 0; k < groups; ++k) mb[k * n] = gol_mean(mb[k * n], count[b * groups + k]);
  }
}

// gram[b, i, j] for i < j (the other entries are never read).
template <typename T>
__global__ void gram_kernel(T* gram, const T* mu, int64_t batch, int64_t n, int64_t groups) {
  using BlockReduce = cub::BlockReduce<T, kReduceThreads>;
  __shared__ typename BlockReduce::TempStorage tmp;
  const int64_t total = batch * groups * groups;
  for (int64_t r = blockIdx.x; r < total; r += gridDim.x) {
    const int64_t b = r / (groups * groups);
    const int64_t ij = r - b * groups * groups;
    const int64_t i = ij / groups, j = ij - i * groups;
    if (j <= i) continue;  // uniform across the block: no barrier is skipped by half of it
    const T* mi = mu + (b * groups + i) * n;
    const T* mj = mu + (b * groups + j) * n;
    T acc = T(0);
    for (int64_t t = threadIdx.x; t < n; t += kReduceThreads) acc += mi[t] * mj[t];
    const T total_ij = BlockReduce(tmp).Sum(acc);
    if (threadIdx.x == 0) gram[r] = total_ij;
    __syncthreads();
  }
}

template <typename T>
__device__ T sample_pairs(const int64_t* count, int64_t b, int64_t groups) {
  int64_t kprime = 0;
  for (int64_t k = 0; k < groups; ++k) kprime += count[b * groups + k] > 0;
  return gol_pairs<T>(kprime);
}

// One block: the per-sample terms summed in batch order, then / B.
template <typename T>
__global__ void loss_kernel(T* out, const T* gram, const int64_t* count, int64_t batch,
                            int64_t groups) {
  using BlockReduce = cub::BlockReduce<T, kReduceThreads>;
  __shared__ typename BlockReduce::TempStorage tmp;
  T acc = T(0);
  for (int64_t b = threadIdx.x; b < batch; b += kReduceThreads) {
    T s = T(0);
    for (int64_t i = 0; i < groups; ++i) {
      for (int64_t j = i + 1; j < groups; ++j) s += ro_abs(gram[(b * groups + i) * groups + j]);
    }
    acc += s / sample_pairs<T>(count, b, groups);
  }
  const T total = BlockReduce(tmp).Sum(acc);
  if (threadIdx.x == 0) out[0] = batch > 0 ? total / static_cast<T>(batch) : T(0);
}

// dmu[b, i, :] = sum_{j != i} coef_ij mu_j / n_i (0 for an empty group).
template <typename T>
__global__ void dmu_kernel(T* dmu, const T* mu, const T* gram, const int64_t* count,
                           const T* grad_out, int64_t batch, int64_t n, int64_t groups) {
  const int64_t total = batch * groups * n;
  const T go = grad_out[0];
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = t / n, p = t - row * n;  // row = b * K + i
    const int64_t b = row / groups, i = row - b * groups;
    const int64_t n_i = count[row];
    T acc = T(0);
    if (n_i > 0) {
      const T pairs = sample_pairs<T>(count, b, groups);
      for (int64_t j = 0; j < groups; ++j) {
        if (j == i || count[b * groups + j] == 0) continue;
        const int64_t lo = i < j ? i : j, hi = i < j ? j : i;
        const T coef = gol_coef(go, gram[(b * groups + lo) * groups + hi],
                                static_cast<T>(batch), pairs);
        acc += coef * mu[(b * groups + j) * n + p];
      }
      acc = acc / static_cast<T>(n_i);
    }
    dmu[t] = acc;
  }
}

template <typename T>
__global__ void scatter_grad_kernel(T* grad, const T* dmu, const int64_t* a, int64_t batch,
                                    int64_t channels, int64_t n, int64_t groups) {
  const int64_t total = batch * channels * n;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = t / n, p = t - row * n;  // row = b * C + c
    const int64_t b = row / channels;
    const int64_t k = a[row];
    grad[t] = gim_valid_label(k, groups) ? dmu[(b * groups + k) * n + p] : T(0);
  }
}

// counts, means and the upper triangle of the Gram matrix, into fresh buffers.
struct Stats {
  at::Tensor count, mu, gram;
};

template <typename T>
Stats group_stats(const at::Tensor& features, const at::Tensor& assignment, int64_t K,
                  cudaStream_t stream) {
  const int64_t B = features.size(0), C = features.size(1);
  const int64_t N = features.size(2) * features.size(3);
  Stats st;
  st.count = at::empty({B * K}, assignment.options());
  st.mu = at::empty({B * K * N}, features.options());
  st.gram = at::empty({B * K * K}, features.options());
  const int64_t* a = assignment.const_data_ptr<int64_t>();
  counts_kernel<<<grid_blocks(B, kThreads), kThreads, 0, stream>>>(
      st.count.mutable_data_ptr<int64_t>(), a, B, C, K);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  group_mean_kernel<T><<<grid_blocks(B * N, kThreads), kThreads, 0, stream>>>(
      st.mu.mutable_data_ptr<T>(), features.const_data_ptr<T>(), a,
      st.count.const_data_ptr<int64_t>(), B, C, N, K);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  gram_kernel<T><<<grid_blocks(B * K * K, 1), kReduceThreads, 0, stream>>>(
      st.gram.mutable_data_ptr<T>(), st.mu.const_data_ptr<T>(), B, N, K);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return st;
}

}  // namespace

void group_orthogonality_loss_cuda(at::Tensor& out, const at::Tensor& features,
                                   const at::Tensor& assignment, int64_t num_groups) {
  const int64_t B = features.size(0);
  c10::cuda::CUDAGuard guard(features.device());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(features.device().index());
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "group_orthogonality_loss_cuda", [&] {
    using T = scalar_t;
    if (B == 0 || features.numel() == 0) {
      // No sample (or no pixel): every term is 0; one thread writes it.
      loss_kernel<T><<<1, kReduceThreads, 0, stream>>>(out.mutable_data_ptr<T>(), nullptr,
                                                       nullptr, 0, num_groups);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      return;
    }
    Stats st = group_stats<T>(features, assignment, num_groups, stream);
    loss_kernel<T><<<1, kReduceThreads, 0, stream>>>(
        out.mutable_data_ptr<T>(), st.gram.const_data_ptr<T>(),
        st.count.const_data_ptr<int64_t>(), B, num_groups);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void group_orthogonality_loss_backward_cuda(at::Tensor& grad_features,
                                            const at::Tensor& grad_out,
                                            const at::Tensor& features,
                                            const at::Tensor& assignment, int64_t num_groups) {
  const int64_t B = features.size(0), C = features.size(1);
  const int64_t N = features.size(2) * features.size(3);
  const int64_t K = num_groups;
  if (grad_features.numel() == 0) return;
  c10::cuda::CUDAGuard guard(features.device());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(features.device().index());
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "group_orthogonality_loss_backward_cuda",
                             [&] {
    using T = scalar_t;
    Stats st = group_stats<T>(features, assignment, K, stream);
    at::Tensor dmu = at::empty({B * K * N}, features.options());
    dmu_kernel<T><<<grid_blocks(B * K * N, kThreads), kThreads, 0, stream>>>(
        dmu.mutable_data_ptr<T>(), st.mu.const_data_ptr<T>(), st.gram.const_data_ptr<T>(),
        st.count.const_data_ptr<int64_t>(), grad_out.const_data_ptr<T>(), B, N, K);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    scatter_grad_kernel<T><<<grid_blocks(B * C * N, kThreads), kThreads, 0, stream>>>(
        grad_features.mutable_data_ptr<T>(), dmu.const_data_ptr<T>(),
        assignment.const_data_ptr<int64_t>(), B, C, N, K);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

TORCH_LIBRARY_IMPL(robustops, CUDA, m) {
  m.impl("group_orthogonality_loss",
         TORCH_FN((group_orthogonality_loss_op<&group_orthogonality_loss_cuda, false>)));
  m.impl("group_orthogonality_loss_backward",
         TORCH_FN(group_orthogonality_loss_backward_op<&group_orthogonality_loss_backward_cuda>));
}

}  // namespace robustops
