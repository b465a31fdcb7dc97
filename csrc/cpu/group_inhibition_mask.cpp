// CPU kernel of group_inhibition_mask: one sample per task (at::parallel_for over the
// batch), the math of kernels/group_inhibition_mask.h.
//
// Per sample: one pass over G (channel weights w_c) fused with one pass over F (the
// K group maps m_g += w_c F[c], K x H*W accumulators that stay in L1/L2), the group
// statistics and masks (K x H*W exps), then one write pass that copies each group's
// mask into its channels. Two reads and one write of C x H*W: nothing else touches
// memory.
#include "group_inhibition_mask.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define RO_HAVE_STREAM_STORES 1
#endif

#include <kernels/group_inhibition_mask.h>

// As in pgd_step.cpp: AVX-512, AVX2 and baseline clones, picked at load time.
#include "cpu/target_clones.h"

namespace robustops {
namespace {

using namespace kernels;

template <typename T>
RO_CPU_CLONES T row_sum(const T* __restrict__ x, int64_t n) {
  T a = 0;
#pragma omp simd reduction(+ : a)
  for (int64_t i = 0; i < n; ++i) a += x[i];
  return a;
}

template <typename T>
RO_CPU_CLONES T row_sq_dev(const T* __restrict__ x, T mu, int64_t n) {
  T a = 0;
#pragma omp simd reduction(+ : a)
  for (int64_t i = 0; i < n; ++i) {
    const T d = x[i] - mu;
    a += d * d;
  }
  return a;
}

template <typename T>
RO_CPU_CLONES void axpy(T* __restrict__ acc, T w, const T* __restrict__ x, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) acc[i] += w * x[i];
}

// Samples per task: a sample is ~3 x C x H*W element visits, enough work on its own.
constexpr int64_t kGrain = 1;

// Outputs at least this large are written with non-temporal stores: they cannot stay in
// cache anyway, and streaming them skips the read-for-ownership of every output line
// (a quarter of the op's memory traffic at 64 x 512 x 16 x 16).
constexpr int64_t kStreamBytes = int64_t(8) << 20;

#ifdef RO_HAVE_STREAM_STORES
__attribute__((target("avx"))) void stream_row(float* dst, const float* src, int64_t n) {
  for (int64_t i = 0; i < n; i += 8) _mm256_stream_ps(dst + i, _mm256_loadu_ps(src + i));
}
__attribute__((target("avx"))) void stream_row(double* dst, const double* src, int64_t n) {
  for (int64_t i = 0; i < n; i += 4) _mm256_stream_pd(dst + i, _mm256_loadu_pd(src + i));
}
bool stream_ok(const void* out, int64_t row_bytes, int64_t total_bytes) {
  static const bool avx = __builtin_cpu_supports("avx");
  // Every row must start on a 32-byte boundary and hold whole vectors.
  return avx && total_bytes >= kStreamBytes && row_bytes % 32 == 0 &&
         reinterpret_cast<std::uintptr_t>(out) % 32 == 0;
}
#endif

// dst[0:n] = src[0:n], streamed past the cache when `stream`.
template <typename T>
void copy_row(T* dst, const T* src, int64_t n, bool stream) {
#ifdef RO_HAVE_STREAM_STORES
  if (stream) {
    stream_row(dst, src, n);
    return;
  }
#endif
  (void)stream;
  std::copy(src, src + n, dst);
}

template <typename T>
void mask_sample(const T* X, const T* G, const int64_t* a, int64_t C, int64_t N, int64_t K,
                 T* out, std::vector<T>& maps, std::vector<T>& weights, bool stream) {
  std::fill(maps.begin(), maps.end(), T(0));
  std::fill(weights.begin(), weights.end(), T(0));
  for (int64_t c = 0; c < C; ++c) {
    const int64_t g = a[c];
    if (!gim_valid_label(g, K)) continue;
    const T w = row_sum(G + c * N, N) / static_cast<T>(N);
    weights[g] += w;
    axpy(maps.data() + g * N, w, X + c * N, N);
  }
  // The maps become the masks in place.
  for (int64_t g = 0; g < K; ++g) {
    T* m = maps.data() + g * N;
    const T mu = row_sum(m, N) / static_cast<T>(N);
    const T sd = gim_std(row_sq_dev(m, mu, N), N);
    const bool positive = gim_inhibits(weights[g]);
    for (int64_t i = 0; i < N; ++i) m[i] = gim_mask_value(m[i], mu, sd, positive);
  }
  for (int64_t c = 0; c < C; ++c) {
    const int64_t g = a[c];
    T* o = out + c * N;
    if (gim_valid_label(g, K)) {
      copy_row(o, maps.data() + g * N, N, stream);
    } else {
      std::fill(o, o + N, T(1));
    }
  }
}

}  // namespace

void group_inhibition_mask_cpu(at::Tensor& out, const at::Tensor& features,
                               const at::Tensor& grad, const at::Tensor& assignment,
                               int64_t num_groups) {
  const int64_t B = features.size(0), C = features.size(1);
  const int64_t N = features.size(2) * features.size(3);
  const int64_t K = num_groups;
  if (out.numel() == 0) return;
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "group_inhibition_mask_cpu", [&] {
    const scalar_t* x = features.const_data_ptr<scalar_t>();
    const scalar_t* g = grad.const_data_ptr<scalar_t>();
    const int64_t* a = assignment.const_data_ptr<int64_t>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    const int64_t row_bytes = N * static_cast<int64_t>(sizeof(scalar_t));
#ifdef RO_HAVE_STREAM_STORES
    const bool stream = stream_ok(o, row_bytes, B * C * row_bytes);
#else
    const bool stream = false;
#endif
    at::parallel_for(0, B, kGrain, [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> maps(K * N), weights(K);
      for (int64_t b = begin; b < end; ++b) {
        mask_sample(x + b * C * N, g + b * C * N, a + b * C, C, N, K, o + b * C * N, maps,
                    weights, stream);
      }
#ifdef RO_HAVE_STREAM_STORES
      if (stream) _mm_sfence();  // streamed stores are visible before the task ends
#endif
    });
  });
}

TORCH_LIBRARY_IMPL(robustops, CPU, m) {
  m.impl("group_inhibition_mask",
         TORCH_FN((group_inhibition_mask_op<&group_inhibition_mask_cpu, true>)));
}

}  // namespace robustops
