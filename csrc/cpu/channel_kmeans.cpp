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

// ----------------------------------------------------------------------------- sum order
// The paper's pairwise_distance is ((A - B) ** 2.0).sum(-1) in torch: every distance is
// torch's CPU sum of one contiguous row of squared differences, and ties (a two-channel
// group's members and its mean) break by how that sum rounds. So the sums here run in
// exactly the order of torch's kernel (cascade_sum in aten/src/ATen/native/cpu/SumKernel.cpp:
// vectorized_inner_sum, or scalar_inner_sum for rows shorter than a vector), checked
// against torch.sum bit for bit by tests/ops/test_channel_kmeans_fidelity.py:
//   - a row of n values is read as nvec = n / L vectors of L lanes (L = 32 bytes / sizeof(T):
//     the lane count of torch's x86 builds, AVX2 and baseline alike; torch does not
//     dispatch this kernel to AVX-512), and the vectors as nilp = nvec / 4 rows of four;
//   - 4 x L running sums (multi_row_sum): sum s of row r, vector k, lane l takes value
//     r*4L + k*L + l; rows go in blocks of 2^lp (lp = max(4, ceil(log2 nilp) / 4)), and a
//     three-level cascade adds each block's sums into the level above (a level is passed on
//     once 2^lp blocks filled it); the rows after the last full block go to level 0; then
//     level 0 += level 1, += level 2, += level 3;
//   - the nvec % 4 vectors left go to vector 0's sums; then vector 0 += 1, += 2, += 3;
//   - the result is 0 + the n % L values left, in order, + lane 0, ..., + lane L-1.
// A row shorter than L runs the same steps with L = 1 (scalar_inner_sum).
// Every operation is a plain add (the pragma above forbids FMA contraction), and lanes
// are independent chains, so vectorising over them changes no result.

constexpr int64_t ceil_log2(int64_t x) {
  int64_t r = 0;
  while ((int64_t(1) << r) < x) ++r;
  return x <= 2 ? 1 : r;  // utils::CeilLog2: 1 for x <= 2
}

// The block size exponent of multi_row_sum over `rows` rows.
inline int64_t level_power(int64_t rows) { return std::max<int64_t>(4, ceil_log2(rows) / 4); }

// torch's sum of the row vals[0..n) (the reference form: any values, any n; used for the
// short sums: a row under L values, the K shifts).
template <typename T>
T torch_row_sum(const T* vals, int64_t n) {
  constexpr int64_t L0 = 32 / sizeof(T);
  const int64_t L = n >= L0 ? L0 : 1;
  const int64_t nvec = n / L, nilp = nvec / 4, W = 4 * L;
  std::vector<T> acc(4 * W, T(0));  // acc[level * W + k * L + l]
  const int64_t lp = level_power(nilp), step = int64_t(1) << lp, mask = step - 1;
  int64_t i = 0;
  for (; i + step <= nilp;) {
    for (int64_t j = 0; j < step; ++j, ++i) {
      for (int64_t e = 0; e < W; ++e) acc[e] += vals[i * W + e];
    }
    for (int64_t lv = 1; lv < 4; ++lv) {
      for (int64_t e = 0; e < W; ++e) {
        acc[lv * W + e] += acc[(lv - 1) * W + e];
        acc[(lv - 1) * W + e] = T(0);
      }
      if ((i & (mask << (lv * lp))) != 0) break;
    }
  }
  for (; i < nilp; ++i) {
    for (int64_t e = 0; e < W; ++e) acc[e] += vals[i * W + e];
  }
  for (int64_t lv = 1; lv < 4; ++lv) {
    for (int64_t e = 0; e < W; ++e) acc[e] += acc[lv * W + e];
  }
  for (int64_t t = nilp * 4; t < nvec; ++t) {
    for (int64_t l = 0; l < L; ++l) acc[l] += vals[t * L + l];
  }
  for (int64_t k = 1; k < 4; ++k) {
    for (int64_t l = 0; l < L; ++l) acc[l] += acc[k * L + l];
  }
  T out = T(0);
  if (L > 1) {
    for (int64_t e = nvec * L; e < n; ++e) out += vals[e];
  }
  for (int64_t l = 0; l < L; ++l) out += acc[l];
  return out;
}

// ||x_r - v_j||^2 = sum_i km_sq_term(x_r[i], v_j[i]) for R rows and V vectors at once
// (out[r * V + j]), each summed in torch's order (above), for rows of n >= L values. The
// 4L running sums of a pair fit in registers (two AVX-512 or four AVX2 registers for
// float32): R * V independent chains of vector adds, each element loaded once for all.
template <typename T, int R, int V>
RO_CPU_CLONES void torch_sq_dists(const T* const* __restrict__ xs, const T* const* __restrict__ vs,
                                  int64_t n, T* __restrict__ out) {
  constexpr int M = R * V;
  constexpr int64_t L = 32 / sizeof(T), W = 4 * L;
  const int64_t nvec = n / L, nilp = nvec / 4;
  T a0[M][W], up[3][M][W];  // level 0 in registers; levels 1-3 touched once per block
  for (int p = 0; p < M; ++p) {
    for (int64_t e = 0; e < W; ++e) a0[p][e] = T(0);
  }
  auto add_rows = [&](int64_t r0, int64_t r1) {
    for (int64_t q = r0; q < r1; ++q) {
#pragma omp simd
      for (int64_t e = 0; e < W; ++e) {
        T xv[R], vv[V];
        for (int r = 0; r < R; ++r) xv[r] = xs[r][q * W + e];
        for (int j = 0; j < V; ++j) vv[j] = vs[j][q * W + e];
        for (int r = 0; r < R; ++r) {
          for (int j = 0; j < V; ++j) a0[r * V + j][e] += km_sq_term(xv[r], vv[j]);
        }
      }
    }
  };
  const int64_t lp = level_power(nilp), step = int64_t(1) << lp, mask = step - 1;
  int64_t i = 0;
  const bool cascaded = nilp >= step;  // (short rows: no block, levels 1-3 stay unused)
  if (cascaded) {
    for (int64_t l = 0; l < 3; ++l) {
      for (int p = 0; p < M; ++p) {
        for (int64_t e = 0; e < W; ++e) up[l][p][e] = T(0);
      }
    }
  }
  for (; i + step <= nilp;) {
    add_rows(i, i + step);
    i += step;
    for (int64_t lv = 1; lv < 4; ++lv) {
      T(*below)[W] = lv == 1 ? a0 : up[lv - 2];
      for (int p = 0; p < M; ++p) {
        for (int64_t e = 0; e < W; ++e) {
          up[lv - 1][p][e] += below[p][e];
          below[p][e] = T(0);
        }
      }
      if ((i & (mask << (lv * lp))) != 0) break;
    }
  }
  add_rows(i, nilp);
  if (cascaded) {  // (adding the zero levels of a short row changes nothing: skipped)
    for (int64_t lv = 0; lv < 3; ++lv) {
      for (int p = 0; p < M; ++p) {
        for (int64_t e = 0; e < W; ++e) a0[p][e] += up[lv][p][e];
      }
    }
  }
  // The epilogue, pairs innermost: M independent chains of dependent adds interleave.
  T total[M];
  for (int p = 0; p < M; ++p) {
    T* s = a0[p];
    const T* x = xs[p / V];
    const T* v = vs[p % V];
    for (int64_t t = nilp * 4; t < nvec; ++t) {
      for (int64_t l = 0; l < L; ++l) s[l] += km_sq_term(x[t * L + l], v[t * L + l]);
    }
    for (int64_t k = 1; k < 4; ++k) {
      for (int64_t l = 0; l < L; ++l) s[l] += s[k * L + l];
    }
    total[p] = T(0);
  }
  for (int64_t e = nvec * L; e < n; ++e) {
    for (int p = 0; p < M; ++p) total[p] += km_sq_term(xs[p / V][e], vs[p % V][e]);
  }
  for (int64_t l = 0; l < L; ++l) {
    for (int p = 0; p < M; ++p) total[p] += a0[p][l];
  }
  for (int p = 0; p < M; ++p) out[p] = total[p];
}

// One squared distance in torch's order, any n.
template <typename T>
T torch_sq_dist(const T* x, const T* v, int64_t n) {
  constexpr int64_t L = 32 / sizeof(T);
  if (n >= L) {
    T out;
    torch_sq_dists<T, 1, 1>(&x, &v, n, &out);
    return out;
  }
  T terms[L];
  for (int64_t i = 0; i < n; ++i) terms[i] = km_sq_term(x[i], v[i]);
  return torch_row_sum(terms, n);
}

// R in {1, 2} rows and m <= 3 vectors: out[r * m + j] = ||xs[r] - vs[j]||^2.
template <typename T>
inline void torch_sq_dists_any(const T* const* xs, int rows, const T* const* vs, int m,
                               int64_t n, T* out) {
  constexpr int64_t L = 32 / sizeof(T);
  if (n < L) {
    for (int r = 0; r < rows; ++r) {
      for (int j = 0; j < m; ++j) out[r * m + j] = torch_sq_dist(xs[r], vs[j], n);
    }
    return;
  }
  if (rows == 2) {
    switch (m) {
      case 3: torch_sq_dists<T, 2, 3>(xs, vs, n, out); break;
      case 2: torch_sq_dists<T, 2, 2>(xs, vs, n, out); break;
      default: torch_sq_dists<T, 2, 1>(xs, vs, n, out); break;
    }
  } else {
    switch (m) {
      case 3: torch_sq_dists<T, 1, 3>(xs, vs, n, out); break;
      case 2: torch_sq_dists<T, 1, 2>(xs, vs, n, out); break;
      default: torch_sq_dists<T, 1, 1>(xs, vs, n, out); break;
    }
  }
}

// out[slot[j] * stride] = ||x - vecs[j]||^2 for the nv vectors, three at a time.
template <typename T>
inline void row_sq_dists(const T* x, int64_t N, const std::vector<const T*>& vecs,
                         const std::vector<int64_t>& slot, T* out, int64_t stride) {
  const int64_t nv = static_cast<int64_t>(vecs.size());
  T tmp[3];
  for (int64_t j0 = 0; j0 < nv; j0 += 3) {
    const int m = static_cast<int>(std::min<int64_t>(3, nv - j0));
    torch_sq_dists_any(&x, 1, vecs.data() + j0, m, N, tmp);
    for (int64_t j = 0; j < m; ++j) out[slot[j0 + j] * stride] = tmp[j];
  }
}

// Two rows: ox[slot[j] * stride] = ||x - vecs[j]||^2, oy[...] = ||y - vecs[j]||^2, three
// vectors (six chains) at a time.
template <typename T>
inline void pair_sq_dists(const T* x, const T* y, int64_t N, const std::vector<const T*>& vecs,
                          const std::vector<int64_t>& slot, T* ox, T* oy, int64_t stride) {
  const int64_t nv = static_cast<int64_t>(vecs.size());
  const T* xs[2] = {x, y};
  T tmp[6];
  for (int64_t j0 = 0; j0 < nv; j0 += 3) {
    const int m = static_cast<int>(std::min<int64_t>(3, nv - j0));
    torch_sq_dists_any(xs, 2, vecs.data() + j0, m, N, tmp);
    for (int64_t j = 0; j < m; ++j) {
      ox[slot[j0 + j] * stride] = tmp[j];
      oy[slot[j0 + j] * stride] = tmp[m + j];
    }
  }
}

// The columns of an N-value map whose group sums add the members one by one (the rest
// take them four at a time).
template <typename T>
inline int64_t seq_columns(int64_t N) {
  constexpr int64_t L = 32 / sizeof(T);
  if (N == 1) return 0;
  const int64_t block = N >= L ? 4 * L : 4;
  return (N / block) * block;
}

// Adds member number i (1-based) x[0..Ns) to the cascade levels lv (4 x Ns, level l at
// lv + l * Ns), passing full blocks of 2^lp members up as multi_row_sum does.
template <typename T>
inline void seq_add(T* __restrict__ lv, const T* __restrict__ x, int64_t Ns, int64_t i,
                    int64_t lp) {
#pragma omp simd
  for (int64_t j = 0; j < Ns; ++j) lv[j] += x[j];
  const int64_t step = int64_t(1) << lp, mask = step - 1;
  if (i % step != 0) return;  // a block of 2^lp members ended: cascade
  for (int64_t l = 1; l < 4; ++l) {
    for (int64_t j = 0; j < Ns; ++j) {
      lv[l * Ns + j] += lv[(l - 1) * Ns + j];
      lv[(l - 1) * Ns + j] = T(0);
    }
    if ((i & (mask << (l * lp))) != 0) break;
  }
}

// out[0..Ns) = the mean of n members from their cascade levels.
template <typename T>
inline void seq_finish(T* lv, int64_t Ns, int64_t n, T* out) {
  const T n_t = static_cast<T>(n);
  for (int64_t l = 1; l < 4; ++l) {
    for (int64_t j = 0; j < Ns; ++j) lv[j] += lv[l * Ns + j];
  }
  for (int64_t j = 0; j < Ns; ++j) out[j] = (T(0) + lv[j]) / n_t;
}

template <typename T>
void torch_mean_rows(const T* X, const int64_t* mem, int64_t n, int64_t N, T* out, T* acc,
                     bool seq_done) {
  const T n_t = static_cast<T>(n);
  if (N == 1) {
    for (int64_t r = 0; r < n; ++r) acc[r] = X[mem[r]];
    out[0] = torch_row_sum(acc, n) / n_t;
    return;
  }
  const int64_t Ns = seq_columns<T>(N);  // columns summed member by member
  const int64_t No = N - Ns;             // columns summed four members at a time
  if (!seq_done) {  // (else pass 1 summed them on its way: kmeans_sample)
    std::fill(acc, acc + 4 * Ns, T(0));
    const int64_t lp = level_power(n);
    for (int64_t r = 0; r < n; ++r) seq_add(acc, X + mem[r] * N, Ns, r + 1, lp);
    seq_finish(acc, Ns, n, out);
  }
  if (No == 0) return;
  // Four members at a time: sum k of level lv at acc + 4 Ns + (lv * 4 + k) * No.
  T* b = acc + 4 * Ns;
  std::fill(b, b + 16 * No, T(0));
  auto at = [&](int64_t lv, int64_t k) { return b + (lv * 4 + k) * No; };
  const int64_t nilp = n / 4;
  const int64_t lp = level_power(nilp), step = int64_t(1) << lp, mask = step - 1;
  for (int64_t t = 0; t < nilp; ++t) {
    for (int64_t k = 0; k < 4; ++k) {
      const T* x = X + mem[4 * t + k] * N + Ns;
      T* a0 = at(0, k);
      for (int64_t j = 0; j < No; ++j) a0[j] += x[j];
    }
    const int64_t i = t + 1;
    if (i % step != 0) continue;
    for (int64_t lv = 1; lv < 4; ++lv) {
      for (int64_t k = 0; k < 4; ++k) {
        for (int64_t j = 0; j < No; ++j) {
          at(lv, k)[j] += at(lv - 1, k)[j];
          at(lv - 1, k)[j] = T(0);
        }
      }
      if ((i & (mask << (lv * lp))) != 0) break;
    }
  }
  for (int64_t lv = 1; lv < 4; ++lv) {
    for (int64_t k = 0; k < 4; ++k) {
      for (int64_t j = 0; j < No; ++j) at(0, k)[j] += at(lv, k)[j];
    }
  }
  for (int64_t r = 4 * nilp; r < n; ++r) {
    const T* x = X + mem[r] * N + Ns;
    for (int64_t j = 0; j < No; ++j) at(0, 0)[j] += x[j];
  }
  for (int64_t k = 1; k < 4; ++k) {
    for (int64_t j = 0; j < No; ++j) at(0, 0)[j] += at(0, k)[j];
  }
  for (int64_t j = 0; j < No; ++j) out[Ns + j] = (T(0) + at(0, 0)[j]) / n_t;
}

// Scratch of one task, reused across its samples.
template <typename T>
struct Workspace {
  std::vector<T> dists, keys, means, mind, shifts, mean_acc, levels;
  std::vector<int64_t> a, a_prev, count, med, next, init_keys, members, first, rank;
  std::vector<char> taken, med_moved, group_changed;
  std::vector<const T*> vecs;
  std::vector<int64_t> slot;

  void resize(int64_t C, int64_t N, int64_t K) {
    dists.resize(C * K);  // dists[c * K + k] = ||x_c - x_{M_k}||^2
    keys.resize(K * C);   // keys[k * C + c] = snapping key of channel c for group k
    means.resize(K * N);
    mean_acc.resize(std::max<int64_t>(16 * N, C));
    levels.resize(K * 4 * seq_columns<T>(N));
    rank.resize(K);
    members.resize(C);  // channels grouped by group, in channel order
    first.resize(K + 1);
    mind.resize(C);
    shifts.resize(K);
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
                   int64_t max_iter, T threshold, bool reseed_farthest, int64_t* a_out,
                   int64_t* m_out, int64_t* it_out, Workspace<T>& w) {
  for (int64_t k = 0; k < K; ++k) {
    w.med[k] = init[k];
    w.med_moved[k] = 1;
  }
  // The group sums of the member-by-member columns run in pass 1, with each row in
  // cache (torch's cascade over members needs only their order, below 2^20 members).
  const int64_t Ns = seq_columns<T>(N);
  const bool fused = C <= (int64_t(1) << 19);
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
    T unfinite = T(0);
    if (fused) std::fill(w.levels.begin(), w.levels.end(), T(0));
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
      if (it == 0) {  // every distance is fresh: sum d * 0 is NaN iff one is NaN or Inf
        for (int64_t k = 0; k < K; ++k) unfinite += dc[k] * T(0);
      }
      w.a[c] = best;
      w.mind[c] = bd;
      ++w.count[best];
      if (fused) seq_add(w.levels.data() + best * 4 * Ns, x, Ns, w.count[best], 4);
    }
    // NaN/Inf features have no distances to group by (the paper's argmin would take the
    // first NaN): refused. A NaN/Inf distance is also what finite values that overflow
    // give, so only then is the map itself read again (at most once).
    if (it == 0 && !(unfinite == T(0))) {
      T z = T(0);
      for (int64_t i = 0; i < C * N; ++i) z += X[i] * T(0);
      TORCH_CHECK_VALUE(z == T(0),
                        "channel_kmeans: features contain NaN or Inf; k-means needs finite "
                        "feature maps");
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
    // Each group's members in channel order (a counting sort), for the means.
    w.first[0] = 0;
    for (int64_t k = 0; k < K; ++k) w.first[k + 1] = w.first[k] + w.count[k];
    for (int64_t k = 0; k < K; ++k) w.next[k] = w.first[k];  // (next: a cursor here)
    for (int64_t c = 0; c < C; ++c) w.members[w.next[w.a[c]]++] = c;
    // Pass 2 (only when some non-empty group changed).
    w.vecs.clear();
    w.slot.clear();
    for (int64_t k = 0; k < K; ++k) {
      if (!w.group_changed[k] || w.count[k] == 0) continue;
      T* s = w.means.data() + k * N;
      if (fused) seq_finish(w.levels.data() + k * 4 * Ns, Ns, w.count[k], s);
      torch_mean_rows(X, w.members.data() + w.first[k], w.count[k], N, s, w.mean_acc.data(),
                      fused);
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
    // An empty group: the paper's mean of nothing is NaN, and numpy's argmin of its NaN
    // distances lands on the lowest-index free channel (equal keys: the first free channel
    // wins); or (reseed_farthest) re-seeded at the free channel farthest from its centre.
    for (int64_t k = 0; k < K; ++k) {
      if (w.count[k] > 0) continue;
      T* key = w.keys.data() + k * C;
      for (int64_t c = 0; c < C; ++c) key[c] = reseed_farthest ? -w.mind[c] : T(0);
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
    // (As the paper's torch.sum(torch.sqrt(torch.sum((new - old) ** 2, dim=1))).)
    for (int64_t k = 0; k < K; ++k) {
      w.shifts[k] = std::sqrt(torch_sq_dist(X + w.next[k] * N, X + w.med[k] * N, N));
    }
    const T shift = torch_row_sum(w.shifts.data(), K);
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
                        double shift_threshold, bool reseed_farthest) {
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
          kmeans_sample(x + b * C * N, C, N, K, start, max_iter, threshold, reseed_farthest,
                        a + b * C, m + b * K, its + b, w);
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
