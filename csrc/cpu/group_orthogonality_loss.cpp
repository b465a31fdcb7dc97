// CPU kernels of group_orthogonality_loss: one sample per task (at::parallel_for over
// the batch), the math of kernels/group_orthogonality_loss.h.
//
// Forward: per sample, one pass over F builds the K group sums (K x H*W, in cache),
// then the K(K-1)/2 inner products of the means; the per-sample terms are summed in
// batch order afterwards (deterministic). Backward recomputes the means (nothing but
// F and the labels is saved), forms dL/dmu (K x H*W) and writes dL/dF in one pass.
#include "group_orthogonality_loss.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <torch/library.h>

#include <algorithm>
#include <vector>

#include <kernels/group_inhibition_mask.h>
#include <kernels/group_orthogonality_loss.h>

// As in pgd_step.cpp: AVX-512, AVX2 and baseline clones, picked at load time.
#include "cpu/target_clones.h"

namespace robustops {
namespace {

using namespace kernels;

template <typename T>
RO_CPU_CLONES void add_row(T* __restrict__ acc, const T* __restrict__ x, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) acc[i] += x[i];
}

template <typename T>
RO_CPU_CLONES void axpy(T* __restrict__ acc, T w, const T* __restrict__ x, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) acc[i] += w * x[i];
}

template <typename T>
RO_CPU_CLONES T dot(const T* __restrict__ x, const T* __restrict__ y, int64_t n) {
  T a = 0;
#pragma omp simd reduction(+ : a)
  for (int64_t i = 0; i < n; ++i) a += x[i] * y[i];
  return a;
}

template <typename T>
struct Groups {
  std::vector<T> mu;         // K x N group means (0 for empty groups)
  std::vector<T> gram;       // K x K inner products of the means
  std::vector<int64_t> count;
  T pairs = T(1);

  Groups(int64_t K, int64_t N) : mu(K * N), gram(K * K), count(K) {}

  // Means, inner products and P_b of one sample.
  void build(const T* X, const int64_t* a, int64_t C, int64_t N, int64_t K) {
    std::fill(mu.begin(), mu.end(), T(0));
    std::fill(count.begin(), count.end(), int64_t(0));
    for (int64_t c = 0; c < C; ++c) {
      const int64_t g = a[c];
      if (!gim_valid_label(g, K)) continue;
      add_row(mu.data() + g * N, X + c * N, N);
      ++count[g];
    }
    int64_t kprime = 0;
    for (int64_t g = 0; g < K; ++g) {
      T* m = mu.data() + g * N;
      for (int64_t i = 0; i < N; ++i) m[i] = gol_mean(m[i], count[g]);
      kprime += count[g] > 0;
    }
    pairs = gol_pairs<T>(kprime);
    for (int64_t i = 0; i < K; ++i) {
      gram[i * K + i] = T(0);
      for (int64_t j = i + 1; j < K; ++j) {
        const T d = dot(mu.data() + i * N, mu.data() + j * N, N);
        gram[i * K + j] = d;
        gram[j * K + i] = d;
      }
    }
  }
};

}  // namespace

void group_orthogonality_loss_cpu(at::Tensor& out, const at::Tensor& features,
                                  const at::Tensor& assignment, int64_t num_groups) {
  const int64_t B = features.size(0), C = features.size(1);
  const int64_t N = features.size(2) * features.size(3);
  const int64_t K = num_groups;
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "group_orthogonality_loss_cpu", [&] {
    using T = scalar_t;
    const T* x = features.const_data_ptr<T>();
    const int64_t* a = assignment.const_data_ptr<int64_t>();
    std::vector<T> per_sample(B);
    at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
      Groups<T> grp(K, N);
      for (int64_t b = begin; b < end; ++b) {
        grp.build(x + b * C * N, a + b * C, C, N, K);
        T s = T(0);
        for (int64_t i = 0; i < K; ++i) {
          for (int64_t j = i + 1; j < K; ++j) s += ro_abs(grp.gram[i * K + j]);
        }
        per_sample[b] = s / grp.pairs;
      }
    });
    // Batch order, one thread: the same bits whatever the thread count.
    T total = T(0);
    for (int64_t b = 0; b < B; ++b) total += per_sample[b];
    out.mutable_data_ptr<T>()[0] = B > 0 ? total / static_cast<T>(B) : T(0);
  });
}

void group_orthogonality_loss_backward_cpu(at::Tensor& grad_features, const at::Tensor& grad_out,
                                           const at::Tensor& features,
                                           const at::Tensor& assignment, int64_t num_groups) {
  const int64_t B = features.size(0), C = features.size(1);
  const int64_t N = features.size(2) * features.size(3);
  const int64_t K = num_groups;
  if (grad_features.numel() == 0) return;
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "group_orthogonality_loss_backward_cpu",
                             [&] {
    using T = scalar_t;
    const T* x = features.const_data_ptr<T>();
    const int64_t* a = assignment.const_data_ptr<int64_t>();
    const T go = grad_out.const_data_ptr<T>()[0];
    T* gx = grad_features.mutable_data_ptr<T>();
    const T batch = static_cast<T>(B);
    at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
      Groups<T> grp(K, N);
      std::vector<T> dmu(K * N);
      for (int64_t b = begin; b < end; ++b) {
        grp.build(x + b * C * N, a + b * C, C, N, K);
        // dL/dmu_i = sum_{j != i} coef_ij mu_j, pre-divided by n_i for the scatter.
        std::fill(dmu.begin(), dmu.end(), T(0));
        for (int64_t i = 0; i < K; ++i) {
          if (grp.count[i] == 0) continue;
          for (int64_t j = 0; j < K; ++j) {
            if (j == i || grp.count[j] == 0) continue;
            const T coef = gol_coef(go, grp.gram[i * K + j], batch, grp.pairs);
            axpy(dmu.data() + i * N, coef, grp.mu.data() + j * N, N);
          }
          const T n_i = static_cast<T>(grp.count[i]);
          T* d = dmu.data() + i * N;
          for (int64_t n = 0; n < N; ++n) d[n] = d[n] / n_i;
        }
        const int64_t* ab = a + b * C;
        T* gb = gx + b * C * N;
        for (int64_t c = 0; c < C; ++c) {
          const int64_t g = ab[c];
          T* o = gb + c * N;
          if (gim_valid_label(g, K)) {
            std::copy(dmu.data() + g * N, dmu.data() + (g + 1) * N, o);
          } else {
            std::fill(o, o + N, T(0));
          }
        }
      }
    });
  });
}

TORCH_LIBRARY_IMPL(robustops, CPU, m) {
  m.impl("group_orthogonality_loss",
         TORCH_FN((group_orthogonality_loss_op<&group_orthogonality_loss_cpu, true>)));
  m.impl("group_orthogonality_loss_backward",
         TORCH_FN(group_orthogonality_loss_backward_op<&group_orthogonality_loss_backward_cpu>));
}

}  // namespace robustops
