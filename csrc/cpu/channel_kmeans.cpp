// CPU kernel of channel_kmeans: one sample per task (at::parallel_for over the batch),
// each run to its own convergence with the math of kernels/channel_kmeans.h.
//
// Why per sample rather than the batched GEMMs of the PyTorch path: a sample's channels
// (C x H*W, 512 KiB at 512 x 16 x 16 in float32) are re-read from L2/L3 by its
// iterations, where the batched form streams the whole batch (32 MiB) from memory three
// times per iteration and runs every sample for max_iter iterations. Work is also
// skipped exactly: a medoid that did not move keeps its distance column, and a group
// whose members did not change keeps its mean and its snapping keys (same arithmetic,
// same result). The squared distances (all the FLOPs) are computed as the paper's code
// does, sum_i (x_i - v_i)^2 (km_sq_term: difference first, not from norms and dot
// products, so that ties round as there); they take two channel rows and up to three
// vectors per call, six accumulator chains.
#include "channel_kmeans.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <vector>

#include <kernels/channel_kmeans.h>
#include <kernels/counter_rng.h>

// As in pgd_step.cpp: AVX-512, AVX2 and baseline clones, picked at load time.
#include "cpu/target_clones.h"

// The squared distances round as the paper's (A - B) ** 2 then sum: a square and an
// add, never fused into an FMA (GCC contracts across statements by default), so that
// ties break as there.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off")
#elif defined(__clang__)
#pragma clang fp contract(off)
#endif

namespace robustops {
namespace {

using namespace kernels;

// ||x - v_j||^2 for M <= 4 vectors at once: x is read once for all of them, and M
// independent accumulator chains keep the FMA units busy.
template <typename T, int M>
RO_CPU_CLONES void sq_dists_m(const T* __restrict__ x, const T* const* __restrict__ v, int64_t n,
                          T* __restrict__ out) {
  const T* __restrict__ v0 = v[0];
  const T* __restrict__ v1 = v[M > 1 ? 1 : 0];
  const T* __restrict__ v2 = v[M > 2 ? 2 : 0];
  const T* __restrict__ v3 = v[M > 3 ? 3 : 0];
  T a0 = 0, a1 = 0, a2 = 0, a3 = 0;
#pragma omp simd reduction(+ : a0, a1, a2, a3)
  for (int64_t i = 0; i < n; ++i) {
    const T xv = x[i];
    a0 += km_sq_term(xv, v0[i]);
    if constexpr (M > 1) a1 += km_sq_term(xv, v1[i]);
    if constexpr (M > 2) a2 += km_sq_term(xv, v2[i]);
    if constexpr (M > 3) a3 += km_sq_term(xv, v3[i]);
  }
  out[0] = a0;
  if constexpr (M > 1) out[1] = a1;
  if constexpr (M > 2) out[2] = a2;
  if constexpr (M > 3) out[3] = a3;
}

// The same for two rows at once (M <= 3 vectors, six chains): each vector element
// loaded serves two rows.
template <typename T, int M>
RO_CPU_CLONES void sq_dists2_m(const T* __restrict__ x, const T* __restrict__ y,
                           const T* const* __restrict__ v, int64_t n, T* __restrict__ ox,
                           T* __restrict__ oy) {
  const T* __restrict__ v0 = v[0];
  const T* __restrict__ v1 = v[M > 1 ? 1 : 0];
  const T* __restrict__ v2 = v[M > 2 ? 2 : 0];
  T a0 = 0, a1 = 0, a2 = 0, b0 = 0, b1 = 0, b2 = 0;
#pragma omp simd reduction(+ : a0, a1, a2, b0, b1, b2)
  for (int64_t i = 0; i < n; ++i) {
    const T xv = x[i], yv = y[i];
    const T w0 = v0[i];
    a0 += km_sq_term(xv, w0);
    b0 += km_sq_term(yv, w0);
    if constexpr (M > 1) {
      const T w1 = v1[i];
      a1 += km_sq_term(xv, w1);
      b1 += km_sq_term(yv, w1);
    }
    if constexpr (M > 2) {
      const T w2 = v2[i];
      a2 += km_sq_term(xv, w2);
      b2 += km_sq_term(yv, w2);
    }
  }
  ox[0] = a0;
  oy[0] = b0;
  if constexpr (M > 1) {
    ox[1] = a1;
    oy[1] = b1;
  }
  if constexpr (M > 2) {
    ox[2] = a2;
    oy[2] = b2;
  }
}

template <typename T>
RO_CPU_CLONES T sq_dist(const T* __restrict__ x, const T* __restrict__ y, int64_t n) {
  T a = 0;
#pragma omp simd reduction(+ : a)
  for (int64_t i = 0; i < n; ++i) {
    a += km_sq_term(x[i], y[i]);
  }
  return a;
}

template <typename T>
RO_CPU_CLONES void add_to(T* __restrict__ acc, const T* __restrict__ x, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) acc[i] += x[i];
}

// out[slot[j] * stride] = ||x - vecs[j]||^2 for the nv vectors, four at a time.
template <typename T>
inline void row_sq_dists(const T* x, int64_t N, const std::vector<const T*>& vecs,
                     const std::vector<int64_t>& slot, T* out, int64_t stride) {
  const int64_t nv = static_cast<int64_t>(vecs.size());
  // Balanced blocks of at most four (six vectors: 3 + 3).
  const int64_t blocks = (nv + 3) / 4;
  const int64_t per = blocks > 0 ? (nv + blocks - 1) / blocks : 0;
  T tmp[4];
  for (int64_t j0 = 0; j0 < nv; j0 += per) {
    const int64_t m = std::min<int64_t>(per, nv - j0);
    const T* const* v = vecs.data() + j0;
    switch (m) {
      case 4: sq_dists_m<T, 4>(x, v, N, tmp); break;
      case 3: sq_dists_m<T, 3>(x, v, N, tmp); break;
      case 2: sq_dists_m<T, 2>(x, v, N, tmp); break;
      default: sq_dists_m<T, 1>(x, v, N, tmp); break;
    }
    for (int64_t j = 0; j < m; ++j) out[slot[j0 + j] * stride] = tmp[j];
  }
}

// Two rows: ox[slot[j] * stride] = ||x - vecs[j]||^2, oy[...] = ||y - vecs[j]||^2, three
// at a time.
template <typename T>
inline void pair_sq_dists(const T* x, const T* y, int64_t N, const std::vector<const T*>& vecs,
                      const std::vector<int64_t>& slot, T* ox, T* oy, int64_t stride) {
  const int64_t nv = static_cast<int64_t>(vecs.size());
  T tx[3], ty[3];
  for (int64_t j0 = 0; j0 < nv; j0 += 3) {
    const int64_t m = std::min<int64_t>(3, nv - j0);
    const T* const* v = vecs.data() + j0;
    switch (m) {
      case 3: sq_dists2_m<T, 3>(x, y, v, N, tx, ty); break;
      case 2: sq_dists2_m<T, 2>(x, y, v, N, tx, ty); break;
      default: sq_dists2_m<T, 1>(x, y, v, N, tx, ty); break;
    }
    for (int64_t j = 0; j < m; ++j) {
      ox[slot[j0 + j] * stride] = tx[j];
      oy[slot[j0 + j] * stride] = ty[j];
    }
  }
}

// Scratch of one task, reused across its samples.
template <typename T>
struct Workspace {
  std::vector<T> dists, keys, means, mind;
  std::vector<int64_t> a, a_prev, count, med, next, init_keys;
  std::vector<char> taken, med_moved, group_changed;
  std::vector<const T*> vecs;
  std::vector<int64_t> slot;

  void resize(int64_t C, int64_t N, int64_t K) {
    dists.resize(C * K);  // dists[c * K + k] = ||x_c - x_{M_k}||^2
    keys.resize(K * C);   // keys[k * C + c] = snapping key of channel c for group k
    means.resize(K * N);
    mind.resize(C);
    a.resize(C);
    a_prev.resize(C);
    count.resize(K);
    med.resize(K);
    next.resize(K);
    taken.resize(C);
    med_moved.resize(K);
    group_changed.resize(K);
    init_keys.resize(C);
    vecs.reserve(K);
    slot.reserve(K);
  }
};

// The seeded initial medoids of one sample (see csrc/channel_kmeans.h): the K smallest of
// the C distinct keys bits * C + c, in increasing order.
template <typename T>
void draw_init(uint32_t row, int64_t C, int64_t K, Workspace<T>& w, int64_t* out) {
  for (int64_t c = 0; c < C; ++c) {
    w.init_keys[c] = static_cast<int64_t>(rng_bits(row, c) >> 9) * C + c;
  }
  std::partial_sort(w.init_keys.begin(), w.init_keys.begin() + K, w.init_keys.end());
  for (int64_t k = 0; k < K; ++k) out[k] = w.init_keys[k] % C;
}

// One sample: X (C, N), init (K,) -> a_out (C,), m_out (K,), *it_out.
//
// Two passes over X per iteration, each channel row read once per pass (the sample
// does not fit in L2, so passes are what costs): pass 1 computes the distances to the
// medoids that moved, assigns the channel and adds it to its group's sum; pass 2 the
// snapping keys of the groups whose members changed.
template <typename T>
void kmeans_sample(const T* X, int64_t C, int64_t N, int64_t K, const int64_t* init,
                   int64_t max_iter, T threshold, int64_t* a_out, int64_t* m_out,
                   int64_t* it_out, Workspace<T>& w) {
  for (int64_t k = 0; k < K; ++k) {
    w.med[k] = init[k];
    w.med_moved[k] = 1;
  }
  int64_t it = 0;
  while (true) {
    // Pass 1.
    w.vecs.clear();
    w.slot.clear();
    for (int64_t k = 0; k < K; ++k) {
      if (!w.med_moved[k]) continue;
      w.vecs.push_back(X + w.med[k] * N);
      w.slot.push_back(k);
    }
    std::fill(w.count.begin(), w.count.end(), int64_t(0));
    std::fill(w.means.begin(), w.means.end(), T(0));
    for (int64_t c = 0; c < C; ++c) {
      const T* x = X + c * N;
      T* dc = w.dists.data() + c * K;
      // Rows in pairs for the distances (the even row computes both).
      if ((c & 1) == 0) {
        if (!w.vecs.empty()) {
          if (c + 1 < C) {
            pair_sq_dists(x, x + N, N, w.vecs, w.slot, dc, dc + K, 1);
          } else {
            row_sq_dists(x, N, w.vecs, w.slot, dc, 1);
          }
        }
      }
      // The first nearest medoid; mind = that distance.
      int64_t best = 0;
      T bd = dc[0];
      for (int64_t k = 1; k < K; ++k) {
        const T d = dc[k];
        if (d < bd) {
          bd = d;
          best = k;
        }
      }
      w.a[c] = best;
      w.mind[c] = bd;
      ++w.count[best];
      add_to(w.means.data() + best * N, x, N);  // group sums in channel order
    }
    // Groups whose members changed need new snapping keys.
    if (it == 0) {
      std::fill(w.group_changed.begin(), w.group_changed.end(), char(1));
    } else {
      std::fill(w.group_changed.begin(), w.group_changed.end(), char(0));
      for (int64_t c = 0; c < C; ++c) {
        if (w.a[c] != w.a_prev[c]) {
          w.group_changed[w.a[c]] = 1;
          w.group_changed[w.a_prev[c]] = 1;
        }
      }
    }
    // Pass 2 (only when some non-empty group changed).
    w.vecs.clear();
    w.slot.clear();
    for (int64_t k = 0; k < K; ++k) {
      if (!w.group_changed[k] || w.count[k] == 0) continue;
      T* s = w.means.data() + k * N;
      const T n_k = static_cast<T>(w.count[k]);
      for (int64_t i = 0; i < N; ++i) s[i] = s[i] / n_k;
      w.vecs.push_back(s);
      w.slot.push_back(k);
    }
    if (!w.vecs.empty()) {
      int64_t c = 0;
      for (; c + 1 < C; c += 2) {
        pair_sq_dists(X + c * N, X + (c + 1) * N, N, w.vecs, w.slot, w.keys.data() + c,
                  w.keys.data() + c + 1, C);
      }
      if (c < C) row_sq_dists(X + c * N, N, w.vecs, w.slot, w.keys.data() + c, C);
    }
    // An empty group is re-seeded at the free channel farthest from its centre.
    for (int64_t k = 0; k < K; ++k) {
      if (w.count[k] > 0) continue;
      T* key = w.keys.data() + k * C;
      for (int64_t c = 0; c < C; ++c) key[c] = -w.mind[c];
    }
    // Snap in group order to distinct channels.
    std::fill(w.taken.begin(), w.taken.end(), char(0));
    for (int64_t k = 0; k < K; ++k) {
      const T* key = w.keys.data() + k * C;
      int64_t best = -1;
      T bv = T(0);
      for (int64_t c = 0; c < C; ++c) {
        if (!w.taken[c] && km_better(key[c], bv, best)) {
          bv = key[c];
          best = c;
        }
      }
      w.taken[best] = 1;
      w.next[k] = best;
    }
    // The medoids' total shift, then the new state.
    T shift = T(0);
    for (int64_t k = 0; k < K; ++k) {
      shift += std::sqrt(sq_dist(X + w.next[k] * N, X + w.med[k] * N, N));
    }
    for (int64_t k = 0; k < K; ++k) {
      w.med_moved[k] = w.next[k] != w.med[k];
      w.med[k] = w.next[k];
    }
    std::swap(w.a, w.a_prev);  // a_prev now holds this iteration's assignment
    ++it;
    if (shift * shift < threshold || it >= max_iter) break;
  }
  std::copy(w.a_prev.begin(), w.a_prev.end(), a_out);
  std::copy(w.med.begin(), w.med.end(), m_out);
  *it_out = it;
}

}  // namespace

void channel_kmeans_cpu(at::Tensor& assignment, at::Tensor& medoids, at::Tensor& iterations,
                        const at::Tensor& features, const at::Tensor& init,
                        const at::Tensor& index, uint32_t base, int64_t max_iter,
                        double shift_threshold) {
  const int64_t B = features.size(0), C = features.size(1);
  const int64_t N = features.size(2) * features.size(3);
  const int64_t K = medoids.size(1);
  if (B == 0) return;
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "channel_kmeans_cpu", [&] {
    const scalar_t* x = features.const_data_ptr<scalar_t>();
    const int64_t* in = init.defined() ? init.const_data_ptr<int64_t>() : nullptr;
    const int64_t* idx = index.defined() ? index.const_data_ptr<int64_t>() : nullptr;
    int64_t* a = assignment.mutable_data_ptr<int64_t>();
    int64_t* m = medoids.mutable_data_ptr<int64_t>();
    int64_t* its = iterations.mutable_data_ptr<int64_t>();
    const scalar_t threshold = static_cast<scalar_t>(shift_threshold);
    // Samples converge at different speeds: each worker takes the next sample from a
    // shared counter (dynamic scheduling) instead of a fixed slice of the batch.
    std::atomic<int64_t> next{0};
    const int64_t workers = std::min<int64_t>(B, at::get_num_threads());
    at::parallel_for(0, workers, 1, [&](int64_t begin, int64_t end) {
      // Per thread, kept across calls (sized for the largest problem seen, a few
      // O(C K + K H W) buffers): a tiny call then allocates nothing here.
      thread_local Workspace<scalar_t> w;
      w.resize(C, N, K);
      for (int64_t t = begin; t < end; ++t) {
        for (int64_t b = next++; b < B; b = next++) {
          const int64_t* start = in != nullptr ? in + b * K : nullptr;
          if (start == nullptr) {
            const int64_t sample = idx != nullptr ? idx[b] : b;
            draw_init(rng_row(base, sample), C, K, w, m + b * K);  // m doubles as scratch
            start = m + b * K;
          }
          kmeans_sample(x + b * C * N, C, N, K, start, max_iter, threshold, a + b * C,
                        m + b * K, its + b, w);
        }
      }
    });
  });
}

// The only kernel of the op: a CUDA tensor has no channel_kmeans kernel here (the public
// function runs the Triton kernels or the PyTorch composition for it).
TORCH_LIBRARY_IMPL(robustops, CPU, m) {
  m.impl("channel_kmeans", TORCH_FN(channel_kmeans_op<&channel_kmeans_cpu>));
}

}  // namespace robustops
