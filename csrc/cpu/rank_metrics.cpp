// CPU kernel of rank_metrics: top-k intersection, Kendall tau-b and Spearman rho of
// B pairs of maps, at::parallel_for over pairs, the formulas of kernels/rank_metrics.h.
//
// Per row, everything comes from two stable argsorts, done as LSD radix sorts on the
// order-preserving integer keys (8-bit digits; a pass whose digit is constant is
// skipped): O(n) instead of a comparison sort's O(n log n), which is what scipy's
// per-pair loop pays (plus its Python overhead) on every pair.
//   - dense and average ranks + tie counts of a and of b from their sorted runs;
//   - the (a, b) lexicographic order by a stable counting sort of b's order on a's
//     dense rank; joint ties are its runs with equal (rank_a, rank_b);
//   - discordant pairs = strict inversions of rank_b in that order, counted with a
//     Fenwick tree (O(n log n));
//   - Spearman: Pearson of the average ranks; top-k: the k largest of each map
//     (ties at the boundary go to the lower index, as a stable descending sort).
// Rows of at most kSmallRow (64) values skip the sorts (row_metrics_small): the same
// counts from all n^2 ordered pairs, in branch-free loops.
#include "rank_metrics.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include <kernels/rank_metrics.h>

#include "cpu/target_clones.h"

namespace robustops {
namespace {

using namespace kernels;

// Radix digits: 11 bits (3 passes for float keys, 6 for double) on long rows, 8 bits
// on short ones, where clearing and scanning 2048 buckets per pass would cost more
// than the row itself.
constexpr int64_t kWideDigitsFrom = 4096;

constexpr int digit_bits(int64_t n) { return n >= kWideDigitsFrom ? 11 : 8; }

// The longest rows whose scratch buffers a thread keeps between calls (128 x 128 maps).
constexpr int64_t kCachedRow = int64_t(1) << 14;

// Scratch buffers of one thread, reused across its rows and calls (the radix histograms
// sized for the digits its rows use: a 64 KiB clear per call would outweigh a short row).
template <typename key_t>
struct Scratch {
  std::vector<key_t> keys, keys_tmp;
  std::vector<int32_t> perm_a, perm_b, tmp, rank_a, rank_b, lex, seq, counts, tree32;
  std::vector<uint16_t> tree16;
  std::vector<double> avg_a, avg_b;
  std::vector<uint8_t> top_b;
  std::vector<int32_t> hist, pos;
  // Buffers for rows of n values (every one is written before it is read).
  void resize(int64_t n) {
    for (auto* v : {&keys, &keys_tmp}) v->resize(n);
    for (auto* v : {&perm_a, &perm_b, &tmp, &rank_a, &rank_b, &lex, &seq}) v->resize(n);
    counts.resize(n + 1);
    tree32.resize(n < 65536 ? 0 : n + 1);
    tree16.resize(n < 65536 ? n + 1 : 0);
    avg_a.resize(n);
    avg_b.resize(n);
    top_b.resize(n);
    hist.resize(8 << digit_bits(n));
    pos.resize(1 << digit_bits(n));
  }
};

// Stable ascending argsort of v[0:n] into perm, keys sorted into s.keys. Returns true
// when v holds a NaN (the order is then meaningless and the caller raises).
template <int kDigitBits, typename scalar_t, typename key_t>
bool radix_argsort_digits(const scalar_t* v, int64_t n, std::vector<int32_t>& perm,
                          Scratch<key_t>& s) {
  constexpr int kBuckets = 1 << kDigitBits;
  constexpr int kPasses = (8 * sizeof(key_t) + kDigitBits - 1) / kDigitBits;
  int32_t* hist = s.hist.data();  // kPasses x kBuckets counts
  std::fill(hist, hist + kPasses * kBuckets, 0);
  key_t* keys = s.keys.data();
  bool nan = false;
  for (int64_t i = 0; i < n; ++i) {
    nan |= v[i] != v[i];
    const key_t k = rank_key(v[i]);
    keys[i] = k;
    perm[i] = static_cast<int32_t>(i);
    for (int p = 0; p < kPasses; ++p) {
      ++hist[p * kBuckets + ((k >> (kDigitBits * p)) & (kBuckets - 1))];
    }
  }
  key_t* kin = keys;
  key_t* kout = s.keys_tmp.data();
  int32_t* pin = perm.data();
  int32_t* pout = s.tmp.data();
  int32_t* pos = s.pos.data();
  for (int p = 0; p < kPasses; ++p) {
    const int32_t* h = hist + p * kBuckets;
    const int shift = kDigitBits * p;
    if (h[(kin[0] >> shift) & (kBuckets - 1)] == n) continue;  // this digit is the same everywhere
    int32_t run = 0;
    for (int d = 0; d < kBuckets; ++d) {
      pos[d] = run;
      run += h[d];
    }
    for (int64_t i = 0; i < n; ++i) {
      const int d = static_cast<int>((kin[i] >> shift) & (kBuckets - 1));
      const int32_t j = pos[d]++;
      kout[j] = kin[i];
      pout[j] = pin[i];
    }
    std::swap(kin, kout);
    std::swap(pin, pout);
  }
  if (pin != perm.data()) std::copy(pin, pin + n, perm.data());
  if (kin != keys) std::copy(kin, kin + n, keys);
  return nan;
}

template <typename scalar_t, typename key_t>
bool radix_argsort(const scalar_t* v, int64_t n, std::vector<int32_t>& perm, Scratch<key_t>& s) {
  return digit_bits(n) == 11 ? radix_argsort_digits<11, scalar_t, key_t>(v, n, perm, s)
                              : radix_argsort_digits<8, scalar_t, key_t>(v, n, perm, s);
}

// From the sorted keys and their order: dense ranks, average (1-based) ranks and the
// tied pairs. Returns the number of distinct values.
template <typename key_t>
int64_t ranks_of(const key_t* sorted, const int32_t* perm, int64_t n, int32_t* dense,
                 double* avg, double* ties) {
  int64_t groups = 0;
  double t = 0;
  for (int64_t gs = 0; gs < n;) {
    int64_t ge = gs + 1;
    while (ge < n && sorted[ge] == sorted[gs]) ++ge;
    const double mean = 0.5 * static_cast<double>(gs + ge - 1) + 1.0;
    for (int64_t j = gs; j < ge; ++j) {
      dense[perm[j]] = static_cast<int32_t>(groups);
      avg[perm[j]] = mean;
    }
    t += tie_pairs(ge - gs);
    ++groups;
    gs = ge;
  }
  *ties = t;
  return groups;
}

// Marks the k largest values (by the ascending order perm of sorted keys), ties at the
// boundary resolved towards the lower index.
template <typename key_t>
void mark_top_k(const key_t* sorted, const int32_t* perm, int64_t n, int64_t k, uint8_t* mark) {
  std::fill(mark, mark + n, uint8_t(0));
  int64_t taken = 0;
  for (int64_t ge = n; ge > 0 && taken < k;) {
    int64_t gs = ge - 1;
    while (gs > 0 && sorted[gs - 1] == sorted[ge - 1]) --gs;
    // Inside a tie group the stable sort left the indices ascending.
    const int64_t take = std::min<int64_t>(ge - gs, k - taken);
    for (int64_t j = gs; j < gs + take; ++j) mark[perm[j]] = 1;
    taken += take;
    ge = gs;
  }
}

// Strict inversions (i < j, seq_i > seq_j) of dense ranks seq[0:n] in [0, m): a Fenwick
// tree of counts, tree_t = uint16 while n < 65536 (the tree then fits in L1 for
// 128 x 128 maps). Measured here, n = 16384: 0.5 ms against 1.7 ms for a merge-sort
// count, whose merge loop is either branch-mispredict or load-latency bound; the
// tree's loads do not depend on each other.
template <typename tree_t>
int64_t count_inversions(const int32_t* seq, int64_t n, int64_t m, tree_t* tree) {
  std::fill(tree, tree + m + 1, tree_t(0));
  int64_t inv = 0;
  for (int64_t j = 0; j < n; ++j) {
    const int64_t r = static_cast<int64_t>(seq[j]) + 1;
    int64_t at_most = 0;  // earlier elements with rank <= seq[j]
    for (int64_t i = r; i > 0; i -= i & -i) at_most += tree[i];
    inv += j - at_most;
    for (int64_t i = r; i <= m; i += i & -i) ++tree[i];
  }
  return inv;
}

// Rows up to this many values take row_metrics_small: there the radix sorts' fixed cost
// (8-bit digits: 4 passes over 256 buckets per sort, two sorts, ~6 us) outweighs the n^2
// pair comparisons. Measured (1 thread, load ~9, us per call of the op, float32 rows):
// pairs 3.9 / 5.4 / 7.7 at n = 16 / 32 / 64, 15.0 at 128; sorts 7.7-10 at n = 129-130.
constexpr int64_t kSmallRow = 64;

// row_metrics for a short row, without sorting: for each i, one pass over all j counts
// the values above / below / equal to a[i] and b[i] (in both maps at once) and the pairs
// (i, j) that disagree in order. The counts are those of the sorted path (every pair is
// seen twice), the average ranks the same doubles in the same order, so both paths give
// identical results. Returns true when a or b holds a NaN.
template <typename scalar_t>
RO_CPU_CLONES bool row_metrics_small(const scalar_t* __restrict__ a, const scalar_t* __restrict__ b,
                                     int64_t n, int64_t k, double* topk, double* tau,
                                     double* rho) {
  bool nan = false;
  for (int64_t i = 0; i < n; ++i) nan |= (a[i] != a[i]) | (b[i] != b[i]);
  if (nan) return true;
  const double mean = 0.5 * static_cast<double>(n + 1);
  int64_t common = 0, eq_a2 = 0, eq_b2 = 0, eq_ab2 = 0, disc2 = 0;
  double sab = 0, saa = 0, sbb = 0;
  for (int64_t i = 0; i < n; ++i) {
    const scalar_t ai = a[i], bi = b[i];
    // above_*: values ahead of i in a stable descending sort (greater, or equal and earlier).
    int32_t above_a = 0, above_b = 0, below_a = 0, below_b = 0, eq_a = 0, eq_b = 0,
            eq_ab = 0, disc = 0;
#pragma omp simd reduction(+ : above_a, above_b, below_a, below_b, eq_a, eq_b, eq_ab, disc)
    for (int64_t j = 0; j < n; ++j) {
      const int32_t ga = a[j] > ai, la = a[j] < ai, gb = b[j] > bi, lb = b[j] < bi;
      const int32_t ea = 1 - ga - la, eb = 1 - gb - lb, earlier = j < i;
      above_a += ga + (ea & earlier);
      above_b += gb + (eb & earlier);
      below_a += la;
      below_b += lb;
      eq_a += ea;
      eq_b += eb;
      eq_ab += ea & eb;
      disc += (ga & lb) | (la & gb);
    }
    common += (above_a < k) & (above_b < k);
    eq_a2 += eq_a - 1;  // i itself is not a tied pair
    eq_b2 += eq_b - 1;
    eq_ab2 += eq_ab - 1;
    disc2 += disc;
    const double da = static_cast<double>(below_a) + 0.5 * static_cast<double>(eq_a - 1) + 1.0 - mean;
    const double db = static_cast<double>(below_b) + 0.5 * static_cast<double>(eq_b - 1) + 1.0 - mean;
    sab += da * db;
    saa += da * da;
    sbb += db * db;
  }
  *topk = static_cast<double>(common) / static_cast<double>(k);
  *tau = kendall_tau_b(n, 0.5 * static_cast<double>(eq_a2), 0.5 * static_cast<double>(eq_b2),
                       0.5 * static_cast<double>(eq_ab2), static_cast<double>(disc2 / 2));
  *rho = pearson(sab, saa, sbb);
  return false;
}

// The three metrics of one pair into *topk, *tau, *rho; returns true when a or b holds a
// NaN.
template <typename scalar_t, typename key_t>
bool row_metrics(const scalar_t* a, const scalar_t* b, int64_t n, int64_t k, double* topk,
                 double* tau, double* rho, Scratch<key_t>& s) {
  double ties_a = 0, ties_b = 0;
  // b first: its sorted keys are needed for b's top-k before a's sort reuses the buffer.
  bool nan = radix_argsort(b, n, s.perm_b, s);
  ranks_of(s.keys.data(), s.perm_b.data(), n, s.rank_b.data(), s.avg_b.data(), &ties_b);
  mark_top_k(s.keys.data(), s.perm_b.data(), n, k, s.top_b.data());
  nan |= radix_argsort(a, n, s.perm_a, s);
  const int64_t groups_a =
      ranks_of(s.keys.data(), s.perm_a.data(), n, s.rank_a.data(), s.avg_a.data(), &ties_a);
  // Top-k intersection: count a's top k that are also among b's (marked above).
  int64_t common = 0, taken = 0;
  for (int64_t ge = n; ge > 0 && taken < k;) {
    int64_t gs = ge - 1;
    while (gs > 0 && s.keys[gs - 1] == s.keys[ge - 1]) --gs;
    const int64_t take = std::min<int64_t>(ge - gs, k - taken);
    for (int64_t j = gs; j < gs + take; ++j) common += s.top_b[s.perm_a[j]];
    taken += take;
    ge = gs;
  }
  *topk = static_cast<double>(common) / static_cast<double>(k);

  // Lexicographic (rank_a, rank_b) order: b's order, stably bucketed by rank_a.
  int32_t* cnt = s.counts.data();
  std::fill(cnt, cnt + groups_a + 1, 0);
  for (int64_t i = 0; i < n; ++i) ++cnt[s.rank_a[i] + 1];
  for (int64_t g = 0; g < groups_a; ++g) cnt[g + 1] += cnt[g];
  for (int64_t j = 0; j < n; ++j) {
    const int32_t i = s.perm_b[j];
    s.lex[cnt[s.rank_a[i]]++] = i;
  }
  double ties_ab = 0;
  int64_t run = 1;
  for (int64_t j = 0; j < n; ++j) {
    const int32_t i = s.lex[j];
    s.seq[j] = s.rank_b[i];
    if (j > 0) {
      const int32_t p = s.lex[j - 1];
      if (s.rank_a[i] == s.rank_a[p] && s.rank_b[i] == s.rank_b[p]) {
        ++run;
        continue;
      }
      ties_ab += tie_pairs(run);
      run = 1;
    }
  }
  ties_ab += tie_pairs(run);
  const int64_t groups_b = n == 0 ? 0 : s.rank_b[s.perm_b[n - 1]] + 1;
  const int64_t discordant =
      n < 65536 ? count_inversions(s.seq.data(), n, groups_b, s.tree16.data())
                : count_inversions(s.seq.data(), n, groups_b, s.tree32.data());
  *tau = kendall_tau_b(n, ties_a, ties_b, ties_ab, static_cast<double>(discordant));

  // Spearman: the average ranks have mean (n + 1) / 2 whatever the ties.
  const double mean = 0.5 * static_cast<double>(n + 1);
  double sab = 0, saa = 0, sbb = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double da = s.avg_a[i] - mean, db = s.avg_b[i] - mean;
    sab += da * db;
    saa += da * da;
    sbb += db * db;
  }
  *rho = pearson(sab, saa, sbb);
  return nan;
}

}  // namespace

bool rank_metrics_cpu(at::Tensor& topk, at::Tensor& kendall, at::Tensor& spearman,
                      const at::Tensor& a, const at::Tensor& b, int64_t k) {
  const int64_t rows = a.size(0);
  if (rows == 0) return false;
  const int64_t n = a.numel() / rows;  // (B, *) maps, each row N contiguous values
  std::atomic<bool> any_nan{false};
  double* o_topk = topk.mutable_data_ptr<double>();
  double* o_tau = kendall.mutable_data_ptr<double>();
  double* o_rho = spearman.mutable_data_ptr<double>();
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "rank_metrics_cpu", [&] {
    using key_t = std::conditional_t<std::is_same_v<scalar_t, double>, uint64_t, uint32_t>;
    const scalar_t* ap = a.const_data_ptr<scalar_t>();
    const scalar_t* bp = b.const_data_ptr<scalar_t>();
    at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
      if (n <= kSmallRow) {  // no sorts, so no scratch buffers to size
        for (int64_t r = begin; r < end; ++r) {
          if (row_metrics_small(ap + r * n, bp + r * n, n, k, o_topk + r, o_tau + r, o_rho + r)) {
            any_nan.store(true, std::memory_order_relaxed);
          }
        }
        return;
      }
      // Rows up to kCachedRow values: buffers kept per thread across calls (a tiny call
      // then allocates nothing here; at most ~1 MiB a thread); longer rows: this task's.
      thread_local Scratch<key_t> cached;
      Scratch<key_t> local;
      Scratch<key_t>& s = n <= kCachedRow ? cached : local;
      s.resize(n);
      for (int64_t r = begin; r < end; ++r) {
        if (row_metrics<scalar_t, key_t>(ap + r * n, bp + r * n, n, k, o_topk + r, o_tau + r,
                                         o_rho + r, s)) {
          any_nan.store(true, std::memory_order_relaxed);
        }
      }
    });
  });
  return any_nan.load();
}

// The only kernel of the op: a CUDA tensor has no rank_metrics kernel here (the public
// functions run the Triton kernels or the PyTorch reference for it).
TORCH_LIBRARY_IMPL(robustops, CPU, m) {
  m.impl("rank_metrics", TORCH_FN(rank_metrics_op<&rank_metrics_cpu>));
}

}  // namespace robustops
