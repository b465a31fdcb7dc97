// CUDA kernels of part_moments: the math of kernels/part_moments.h, launched on the
// current stream. Includes are kept minimal (no torch/extension.h).
//
// Forward: a block takes kPixels pixels of one image (kPerThread per thread, strided
// so loads coalesce), keeps each pixel's channel max, 1 / sum of exps and foreground
// weight in registers, and for every part reduces its 6 moments over the block with
// one CUB BlockReduce of a 6-float struct; the partials (one row per block) are added
// in block order, in double, by a second kernel (one thread per (image, part)) that
// writes the stats and the features: deterministic, no atomics. With a softmax buffer
// (non-empty), the partials kernel also stores S there for the backward.
// Backward: elementwise over pixels; each block first computes its image's per-part
// coefficients (pm_coeffs, one thread per part) into shared memory. S is read from the
// saved softmax when there is one (the logits are then read only in weighted mode, for f
// and phi), else recomputed from the logits.
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cub/block/block_reduce.cuh>

#include <kernels/part_moments.h>

#include "part_moments.h"

#include <torch/library.h>

namespace robustops {
namespace {

using namespace kernels;

constexpr int kThreads = 256;
constexpr int kPerThread = 4;
constexpr int64_t kPixels = static_cast<int64_t>(kThreads) * kPerThread;

template <typename T>
struct Moments {
  T v[kPmMoments];
};

struct MomentsSum {
  template <typename T>
  __device__ __forceinline__ Moments<T> operator()(const Moments<T>& a,
                                                   const Moments<T>& b) const {
    Moments<T> r;
#pragma unroll
    for (int q = 0; q < kPmMoments; ++q) r.v[q] = a.v[q] + b.v[q];
    return r;
  }
};

// Per-pixel state of a thread's kPerThread pixels: channel max, 1 / sum of exps, f.
template <typename scalar_t, typename T>
__device__ __forceinline__ void pixel_state(const scalar_t* __restrict__ img, int64_t c,
                                            int64_t hw, int64_t p0, bool weighted,
                                            T* mx, T* inv, T* f) {
#pragma unroll
  for (int i = 0; i < kPerThread; ++i) {
    const int64_t p = p0 + static_cast<int64_t>(i) * kThreads;
    if (p >= hw) {
      mx[i] = T(0);
      inv[i] = T(0);  // S = 0 for pixels past the end: they add nothing
      f[i] = T(0);
      continue;
    }
    const T m0 = static_cast<T>(img[p]);
    T m = m0;
    for (int64_t ch = 1; ch < c; ++ch) m = pm_max(m, static_cast<T>(img[ch * hw + p]));
    T z = ro_exp<T>(m0 - m), t = -m0;
    for (int64_t ch = 1; ch < c; ++ch) {
      const T mc = static_cast<T>(img[ch * hw + p]);
      z += ro_exp<T>(mc - m);
      t += mc;
    }
    mx[i] = m;
    inv[i] = T(1) / z;
    f[i] = weighted ? pm_sigmoid<T>(t) : T(0);
  }
}

// Foreground weight f of a thread's kPerThread pixels (the saved-softmax backward).
template <typename scalar_t, typename T>
__device__ __forceinline__ void pixel_f(const scalar_t* __restrict__ img, int64_t c, int64_t hw,
                                        int64_t p0, T* f) {
#pragma unroll
  for (int i = 0; i < kPerThread; ++i) {
    const int64_t p = p0 + static_cast<int64_t>(i) * kThreads;
    if (p >= hw) {
      f[i] = T(0);
      continue;
    }
    T t = -static_cast<T>(img[p]);
    for (int64_t ch = 1; ch < c; ++ch) t += static_cast<T>(img[ch * hw + p]);
    f[i] = pm_sigmoid<T>(t);
  }
}

template <typename scalar_t, typename T>
__global__ void pm_partials_kernel(T* __restrict__ partial, T* __restrict__ softmax,
                                   const scalar_t* __restrict__ logits, int64_t c, int64_t h,
                                   int64_t w, int64_t nblk, bool weighted) {
  using BlockReduce = cub::BlockReduce<Moments<T>, kThreads>;
  using ScalarReduce = cub::BlockReduce<T, kThreads>;
  __shared__ typename BlockReduce::TempStorage tmp;
  __shared__ typename ScalarReduce::TempStorage tmp_f;
  const int64_t b = blockIdx.x / nblk, blk = blockIdx.x - b * nblk, hw = h * w;
  const int64_t ns = kPmMoments * (c - 1) + 1;
  const scalar_t* img = logits + b * c * hw;
  const int64_t p0 = blk * kPixels + threadIdx.x;
  T mx[kPerThread], inv[kPerThread], f[kPerThread];
  pixel_state<scalar_t, T>(img, c, hw, p0, weighted, mx, inv, f);
  T* out = partial + (b * nblk + blk) * ns;
  T* sm = softmax != nullptr ? softmax + b * c * hw : nullptr;
  if (sm != nullptr) {
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) {
      const int64_t p = p0 + static_cast<int64_t>(i) * kThreads;
      if (p < hw) sm[p] = ro_exp<T>(static_cast<T>(img[p]) - mx[i]) * inv[i];
    }
  }
  for (int64_t k = 1; k < c; ++k) {
    Moments<T> acc;
#pragma unroll
    for (int q = 0; q < kPmMoments; ++q) acc.v[q] = T(0);
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) {
      const int64_t p = p0 + static_cast<int64_t>(i) * kThreads;
      if (p >= hw) continue;
      const T mk = static_cast<T>(img[k * hw + p]);
      const T s = ro_exp<T>(mk - mx[i]) * inv[i];
      if (sm != nullptr) sm[k * hw + p] = s;
      const T u = pm_centred<T>(p % w, w), v = pm_centred<T>(p / w, h);
      acc.v[0] += s;
      acc.v[1] += s * u;
      acc.v[2] += s * u * u;
      acc.v[3] += s * v;
      acc.v[4] += s * v * v;
      acc.v[5] += mk * f[i];
    }
    if (k > 1) __syncthreads();  // the temp storage is reused
    const Moments<T> tot = BlockReduce(tmp).Reduce(acc, MomentsSum());
    if (threadIdx.x == 0) {
#pragma unroll
      for (int q = 0; q < kPmMoments; ++q) out[(k - 1) * kPmMoments + q] = tot.v[q];
    }
  }
  T fs = T(0);
#pragma unroll
  for (int i = 0; i < kPerThread; ++i) fs += f[i];
  const T ftot = ScalarReduce(tmp_f).Sum(fs);
  if (threadIdx.x == 0) out[ns - 1] = ftot;
}

// One thread per (image, part): add the blocks' partials in order, write stats and features.
template <typename scalar_t, typename T>
__global__ void pm_finalize_kernel(double* __restrict__ stats, scalar_t* __restrict__ features,
                                   const T* __restrict__ partial, int64_t nb, int64_t k,
                                   int64_t h, int64_t w, int64_t nblk, bool weighted) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= nb * k) return;
  const int64_t b = idx / k, part = idx - b * k, ns = kPmMoments * k + 1;
  double m[kPmMoments] = {0, 0, 0, 0, 0, 0};
  double fsum = 0.0;
  for (int64_t blk = 0; blk < nblk; ++blk) {
    const T* pb = partial + (b * nblk + blk) * ns;
#pragma unroll
    for (int q = 0; q < kPmMoments; ++q) m[q] += static_cast<double>(pb[part * kPmMoments + q]);
    fsum += static_cast<double>(pb[ns - 1]);
  }
  double* sb = stats + b * ns;
#pragma unroll
  for (int q = 0; q < kPmMoments; ++q) sb[part * kPmMoments + q] = m[q];
  if (part == 0) sb[ns - 1] = fsum;
  double fe[kPmFeatures];
  pm_features(m, fsum, h, w, weighted, fe);
#pragma unroll
  for (int q = 0; q < kPmFeatures; ++q)
    features[(b * k + part) * kPmFeatures + q] = static_cast<scalar_t>(fe[q]);
}

// grad_logits may alias softmax (the gradient written over the saved S): each thread
// reads its pixels' S before writing them, hence no __restrict__ on either.
template <typename scalar_t, typename T>
__global__ void pm_backward_kernel(scalar_t* grad_logits,
                                   const double* __restrict__ grad,
                                   const scalar_t* __restrict__ logits,
                                   const double* __restrict__ stats,
                                   const T* softmax, int64_t c, int64_t h, int64_t w,
                                   int64_t nblk, bool weighted) {
  // Shared: per part (a, b, c, d, e, dq) in T, then each part's dF share in double.
  extern __shared__ double smem[];
  const int64_t k = c - 1, ns = kPmMoments * k + 1, hw = h * w;
  double* dfs = smem;
  T* co = reinterpret_cast<T*>(smem + k + 1);
  const int64_t b = blockIdx.x / nblk, blk = blockIdx.x - b * nblk;
  const double* sb = stats + b * ns;
  for (int64_t part = threadIdx.x; part < k; part += kThreads) {
    const PmCoeffs r = pm_coeffs(sb + part * kPmMoments, sb[ns - 1],
                                 grad + (b * k + part) * kPmFeatures, h, w, weighted);
    T* cp = co + part * kPmMoments;
    cp[0] = static_cast<T>(r.a);
    cp[1] = static_cast<T>(r.b);
    cp[2] = static_cast<T>(r.c);
    cp[3] = static_cast<T>(r.d);
    cp[4] = static_cast<T>(r.e);
    cp[5] = static_cast<T>(r.dq);
    dfs[part] = r.dfsum;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    double total = 0.0;
    for (int64_t part = 0; part < k; ++part) total += dfs[part];
    dfs[k] = total;
  }
  __syncthreads();
  const T dfsum = static_cast<T>(dfs[k]);
  const scalar_t* img = logits + b * c * hw;
  scalar_t* out = grad_logits + b * c * hw;
  const int64_t p0 = blk * kPixels + threadIdx.x;
  const T* sm = softmax != nullptr ? softmax + b * c * hw : nullptr;
  T mx[kPerThread], inv[kPerThread], f[kPerThread];
  if (sm == nullptr)
    pixel_state<scalar_t, T>(img, c, hw, p0, weighted, mx, inv, f);
  else if (weighted)
    pixel_f<scalar_t, T>(img, c, hw, p0, f);
  // S_k at pixel p (the i-th of this thread): saved, or recomputed from the logits.
  auto soft = [&](int64_t ch, int64_t p, int i) -> T {
    return sm != nullptr ? sm[ch * hw + p]
                         : ro_exp<T>(static_cast<T>(img[ch * hw + p]) - mx[i]) * inv[i];
  };
#pragma unroll
  for (int i = 0; i < kPerThread; ++i) {
    const int64_t p = p0 + static_cast<int64_t>(i) * kThreads;
    if (p >= hw) continue;
    const T u = pm_centred<T>(p % w, w), v = pm_centred<T>(p / w, h);
    const T fi = weighted ? f[i] : T(0);
    T dot = T(0), phi = dfsum;
    for (int64_t part = 1; part < c; ++part) {
      const T* cp = co + (part - 1) * kPmMoments;
      const T s = soft(part, p, i);
      const T g = cp[0] + v * (cp[3] + cp[4] * v) + u * (cp[1] + cp[2] * u);
      dot += s * g;
      if (weighted) phi += cp[5] * static_cast<T>(img[part * hw + p]);
    }
    const T sp = phi * fi * (T(1) - fi);
    out[p] = static_cast<scalar_t>(-soft(0, p, i) * dot - sp);
    for (int64_t part = 1; part < c; ++part) {
      const T* cp = co + (part - 1) * kPmMoments;
      const T s = soft(part, p, i);
      const T g = cp[0] + v * (cp[3] + cp[4] * v) + u * (cp[1] + cp[2] * u);
      out[part * hw + p] = static_cast<scalar_t>(s * (g - dot) + cp[5] * fi + sp);
    }
  }
}

int64_t blocks_per_image(int64_t hw) { return (hw + kPixels - 1) / kPixels; }

}  // namespace

void part_moments_cuda(at::Tensor& features, at::Tensor& stats, at::Tensor& softmax,
                       const at::Tensor& logits, bool weighted) {
  const int64_t nb = logits.size(0), c = logits.size(1), h = logits.size(2), w = logits.size(3);
  const int64_t k = c - 1, ns = kPmMoments * k + 1, nblk = blocks_per_image(h * w);
  if (nb == 0) return;
  c10::cuda::CUDAGuard guard(logits.device());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(logits.device().index());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(),
                                  "part_moments_cuda", [&] {
    using T = at::opmath_type<scalar_t>;
    at::Tensor partial = at::empty({nb * nblk * ns},
                                   logits.options().dtype(c10::CppTypeToScalarType<T>::value));
    // One 1-D grid of (image, block) pairs: gridDim.x allows 2^31 - 1 blocks.
    const unsigned grid = static_cast<unsigned>(nb * nblk);
    T* sm = softmax.numel() > 0 ? softmax.mutable_data_ptr<T>() : nullptr;
    pm_partials_kernel<scalar_t, T><<<grid, kThreads, 0, stream>>>(
        partial.mutable_data_ptr<T>(), sm, logits.const_data_ptr<scalar_t>(), c, h, w, nblk,
        weighted);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const unsigned fin_blocks = static_cast<unsigned>((nb * k + 127) / 128);
    pm_finalize_kernel<scalar_t, T><<<fin_blocks, 128, 0, stream>>>(
        stats.mutable_data_ptr<double>(), features.mutable_data_ptr<scalar_t>(),
        partial.const_data_ptr<T>(), nb, k, h, w, nblk, weighted);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void part_moments_backward_cuda(at::Tensor& grad_logits, const at::Tensor& grad,
                                const at::Tensor& logits, const at::Tensor& stats,
                                const at::Tensor& softmax, bool weighted) {
  const int64_t nb = logits.size(0), c = logits.size(1), h = logits.size(2), w = logits.size(3);
  const int64_t k = c - 1, nblk = blocks_per_image(h * w);
  if (nb == 0) return;
  c10::cuda::CUDAGuard guard(logits.device());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(logits.device().index());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(),
                                  "part_moments_backward_cuda", [&] {
    using T = at::opmath_type<scalar_t>;
    const size_t smem = sizeof(double) * static_cast<size_t>(k + 1) +
                        sizeof(T) * static_cast<size_t>(k * kPmMoments);
    const unsigned grid = static_cast<unsigned>(nb * nblk);
    const T* sm = softmax.numel() > 0 ? softmax.const_data_ptr<T>() : nullptr;
    pm_backward_kernel<scalar_t, T><<<grid, kThreads, smem, stream>>>(
        grad_logits.mutable_data_ptr<scalar_t>(), grad.const_data_ptr<double>(),
        logits.const_data_ptr<scalar_t>(), stats.const_data_ptr<double>(), sm, c, h, w, nblk,
        weighted);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

TORCH_LIBRARY_IMPL(robustops, CUDA, m) {
  m.impl("part_moments", TORCH_FN(part_moments_op<&part_moments_cuda>));
  m.impl("part_moments_backward", TORCH_FN(part_moments_backward_op<&part_moments_backward_cuda>));
  m.impl("part_moments_backward_inplace",
         TORCH_FN(part_moments_backward_inplace_op<&part_moments_backward_cuda>));
}

}  // namespace robustops
