// CPU kernels of part_moments: the math of kernels/part_moments.h.
//
// Work splits into (image, block of kRows rows) tasks, a fixed split (results do not
// depend on the thread count). A task walks its rows one at a time and each row in
// register blocks of kBlock pixels: the block's C channels of logits are converted
// into an L1 scratch tile, and the per-pixel state (channel max, sum of exps,
// foreground logit, then the gradient's dot product and phi) stays in registers
// across the loop over channels. Every loop is branch-free over the block's pixels
// (fixed length: fully vectorised, exps included). Forward: per-part sums are row
// reductions, added in float64 per task into a partial buffer; a second loop adds
// each image's partials in row order and writes the stats and features; when asked, the
// softmax S is stored as it is summed. Backward: each task recomputes its image's
// per-part coefficients (K small formulas) and writes dL/dM for its rows, block by
// block, from the softmax the forward saved (then no exps; the in-place backward op
// writes the gradient over it) or recomputed from the logits. The weighted / bbox variants are template
// instances, so the bbox variant does no foreground work. The ops' CPU kernels are
// registered at the end (schemas, checks and layouts: csrc/ops/part_moments.cpp).
#include "part_moments.h"

#include <torch/library.h>

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cmath>
#include <vector>

#include <kernels/part_moments.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
// x86-64-v3 = AVX2 + FMA (the exp polynomial is a chain of multiply-adds).
#define RO_CPU_CLONES \
  __attribute__((target_clones("avx512f", "arch=x86-64-v3", "avx2", "default")))
#else
#define RO_CPU_CLONES
#endif

namespace robustops {
namespace {

using namespace kernels;

// exp for the vectorised loops: std::exp is a scalar libm call that stops GCC from
// vectorising a loop (libmvec needs -ffast-math), and the C + 1 exps per pixel are the
// bulk of the work. Cephes' expf: x = n ln2 + r, a degree-6 polynomial in r, 2^n from
// the exponent bits; ~1 ulp on the clamped range, branch-free. exp(x) for x < -87.3
// returns ~1e-38 instead of a denormal or 0 (only ever added to sums of order >= 1).
// double keeps std::exp (float64 is the tests' precision, not the hot path).
template <bool kNonPositive = false>
inline float fast_exp(float x) {
  // The softmax's exp(M - max) never sees x > 0: one clamp fewer in the hottest loop.
  x = kNonPositive ? std::max(x, -87.3f) : std::min(std::max(x, -87.3f), 88.3f);
  const float t = x * 1.44269504088896341f + 12582912.0f;  // 1.5 * 2^23: round to int
  const float n = t - 12582912.0f;
  const int32_t i = std::bit_cast<int32_t>(t) - 0x4B400000;
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  const float z = r * r;
  const float p = ((((1.9875691500e-4f * r + 1.3981999507e-3f) * r + 8.3334519073e-3f) * r +
                    4.1665795894e-2f) * r + 1.6666665459e-1f) * r + 5.0000001201e-1f;
  return (p * z + r + 1.0f) * std::bit_cast<float>((i + 127) << 23);
}
template <bool kNonPositive = false>
inline double fast_exp(double x) {
  return std::exp(x);
}

template <typename T>
inline T fast_sigmoid(T t) {
  return T(1) / (T(1) + fast_exp(-t));
}

constexpr int64_t kRows = 8;  // rows per task: 8 x 64 pixels x 11 channels ~ 22 KB of logits
constexpr int kBlock = 16;    // pixels per register block: two AVX2 (one AVX-512) float vectors
constexpr int kHalf = kBlock / 2;  // then at most one block of 8 (narrow images), then single
                                   // pixels: every row function walks a row in the same blocks

// Scratch of one task: the converted logits of a row (C x W), their exps or softmax
// (C x W), and per-pixel rows: 1 / sum of exps, f, the centred column coordinate u.
// One allocation (a tiny input's call is mostly fixed costs).
template <typename T>
struct RowScratch {
  std::vector<T> buf;
  T *m, *e, *inv, *f, *u;
  RowScratch(int64_t c, int64_t w) : buf(static_cast<size_t>((2 * c + 3) * w)) {
    m = buf.data();
    e = m + c * w;
    inv = e + c * w;
    f = inv + w;
    u = f + w;
    for (int64_t j = 0; j < w; ++j) u[j] = pm_centred<T>(j, w);
  }
};

// N pixels of a row (src: channel 0 of the first pixel; m, e: the tile at the same
// column, leading dimension ld): converted logits into m, exp(M - max) into e, and
// 1 / sum of exps and f (0 unless kWeighted) into inv, f.
template <int N, bool kWeighted, typename scalar_t, typename T>
// always_inline: a call would keep the block's register state (mx, z, t) in memory.
__attribute__((always_inline)) inline void softmax_block(const scalar_t* __restrict__ src,
                                                         int64_t plane, int64_t c, int64_t ld,
                                                         T* __restrict__ m, T* __restrict__ e,
                                                         T* __restrict__ inv,
                                                         T* __restrict__ f) {
  T mx[N], z[N], t[N];
#pragma omp simd
  for (int jj = 0; jj < N; ++jj) {
    const T v = static_cast<T>(src[jj]);
    m[jj] = v;
    mx[jj] = v;
    t[jj] = -v;
    z[jj] = T(0);
  }
  for (int64_t ch = 1; ch < c; ++ch) {
    const scalar_t* s = src + ch * plane;
    T* mc = m + ch * ld;
#pragma omp simd
    for (int jj = 0; jj < N; ++jj) {
      const T v = static_cast<T>(s[jj]);
      mc[jj] = v;
      mx[jj] = std::max(mx[jj], v);
      if constexpr (kWeighted) t[jj] += v;
    }
  }
  for (int64_t ch = 0; ch < c; ++ch) {
    const T* mc = m + ch * ld;
    T* ec = e + ch * ld;
#pragma omp simd
    for (int jj = 0; jj < N; ++jj) {
      const T ev = fast_exp<true>(mc[jj] - mx[jj]);
      ec[jj] = ev;
      z[jj] += ev;
    }
  }
#pragma omp simd
  for (int jj = 0; jj < N; ++jj) {
    inv[jj] = T(1) / z[jj];
    f[jj] = kWeighted ? fast_sigmoid<T>(t[jj]) : T(0);
  }
}

// A whole row: register blocks, a half block, then the tail one pixel at a time.
template <bool kWeighted, typename scalar_t, typename T>
RO_CPU_CLONES void softmax_row(RowScratch<T>& r, const scalar_t* __restrict__ src,
                               int64_t plane, int64_t c, int64_t w) {
  int64_t j = 0;
  for (; j + kBlock <= w; j += kBlock)
    softmax_block<kBlock, kWeighted>(src + j, plane, c, w, r.m + j, r.e + j, r.inv + j,
                                     r.f + j);
  if (j + kHalf <= w) {
    softmax_block<kHalf, kWeighted>(src + j, plane, c, w, r.m + j, r.e + j, r.inv + j,
                                    r.f + j);
    j += kHalf;
  }
  for (; j < w; ++j)
    softmax_block<1, kWeighted>(src + j, plane, c, w, r.m + j, r.e + j, r.inv + j, r.f + j);
}

// Row sums of one part: (S, S u, S u^2, M f) with S = e / sum of exps; with kSave S is
// also stored into sout (the saved softmax row of this part).
template <bool kWeighted, bool kSave, typename T>
RO_CPU_CLONES void part_row_sums(const T* __restrict__ e, const T* __restrict__ inv,
                                 const T* __restrict__ mk, const T* __restrict__ f,
                                 const T* __restrict__ u, int64_t w, T* out,
                                 T* __restrict__ sout) {
  T r = 0, ru = 0, ruu = 0, q = 0;
#pragma omp simd reduction(+ : r, ru, ruu, q)
  for (int64_t j = 0; j < w; ++j) {
    const T s = e[j] * inv[j];
    if constexpr (kSave) sout[j] = s;
    const T su = s * u[j];
    r += s;
    ru += su;
    ruu += su * u[j];
    if constexpr (kWeighted) q += mk[j] * f[j];
  }
  out[0] = r;
  out[1] = ru;
  out[2] = ruu;
  out[3] = q;
}

// The background's softmax row: S_0 = e_0 / sum of exps, stored.
template <typename T>
RO_CPU_CLONES void store_row(const T* __restrict__ e, const T* __restrict__ inv, int64_t w,
                             T* __restrict__ sout) {
#pragma omp simd
  for (int64_t j = 0; j < w; ++j) sout[j] = e[j] * inv[j];
}

template <typename T>
RO_CPU_CLONES T row_sum(const T* __restrict__ x, int64_t w) {
  T a = 0;
#pragma omp simd reduction(+ : a)
  for (int64_t j = 0; j < w; ++j) a += x[j];
  return a;
}

// The per-part coefficients of one row in the compute type: dL/dS_k = row_k + u (b_k +
// c_k u) and dq_k (index k = part, entry 0 unused).
template <typename T>
struct RowCoeffs {
  std::vector<T> row, b, c, dq;
  explicit RowCoeffs(int64_t ch) : row(ch), b(ch), c(ch), dq(ch) {}
  void set(const PmCoeffs* co, T v, int64_t ch) {
    for (int64_t k = 1; k < ch; ++k) {
      row[k] = pm_row_term<T>(co[k - 1], v);
      b[k] = static_cast<T>(co[k - 1].b);
      c[k] = static_cast<T>(co[k - 1].c);
      dq[k] = static_cast<T>(co[k - 1].dq);
    }
  }
};

// dL/dM of the part channels k >= 1 of N pixels, from their softmax s (row stride ld),
// dot = sum over parts of s * dL/ds, and in weighted mode the foreground weight f and its
// term sp. out may alias s (the in-place backward): each element is read, then written.
template <int N, bool kWeighted, typename scalar_t, typename T>
__attribute__((always_inline)) inline void part_grads(scalar_t* out, int64_t plane, const T* s,
                                                      int64_t ld, int64_t c,
                                                      const T* __restrict__ u,
                                                      const RowCoeffs<T>& rc, const T* dot,
                                                      const T* f, const T* sp) {
  for (int64_t k = 1; k < c; ++k) {
    const T* sk = s + k * ld;
    const T row = rc.row[k], b = rc.b[k], cc = rc.c[k], dq = rc.dq[k];
    scalar_t* ok = out + k * plane;
#pragma omp simd
    for (int jj = 0; jj < N; ++jj) {
      T g = sk[jj] * (pm_grad_s<T>(row, b, cc, u[jj]) - dot[jj]);
      if constexpr (kWeighted) g += dq * f[jj] + sp[jj];
      ok[jj] = static_cast<scalar_t>(g);
    }
  }
}

// dL/dM of N pixels of a row from their softmax tile (exps e, 1 / sum inv, f, logits m).
template <int N, bool kWeighted, typename scalar_t, typename T>
__attribute__((always_inline)) inline void grad_block(scalar_t* __restrict__ out, int64_t plane,
                                                      int64_t c, int64_t ld,
                                                      const T* __restrict__ m, T* __restrict__ e,
                                                      const T* __restrict__ inv,
                                                      const T* __restrict__ f,
                                                      const T* __restrict__ u,
                                                      const RowCoeffs<T>& rc, T dfsum) {
  T dot[N], phi[N], sp[N];
#pragma omp simd
  for (int jj = 0; jj < N; ++jj) {
    dot[jj] = T(0);
    phi[jj] = dfsum;
    e[jj] *= inv[jj];  // S_0
  }
  for (int64_t k = 1; k < c; ++k) {
    T* sk = e + k * ld;
    const T* mk = m + k * ld;
    const T row = rc.row[k], b = rc.b[k], cc = rc.c[k], dq = rc.dq[k];
#pragma omp simd
    for (int jj = 0; jj < N; ++jj) {
      const T s = sk[jj] * inv[jj];
      sk[jj] = s;
      dot[jj] += s * pm_grad_s<T>(row, b, cc, u[jj]);
      if constexpr (kWeighted) phi[jj] += dq * mk[jj];
    }
  }
#pragma omp simd
  for (int jj = 0; jj < N; ++jj) {
    sp[jj] = kWeighted ? phi[jj] * f[jj] * (T(1) - f[jj]) : T(0);
    out[jj] = static_cast<scalar_t>(-e[jj] * dot[jj] - sp[jj]);
  }
  part_grads<N, kWeighted>(out, plane, e, ld, c, u, rc, dot, f, sp);
}

// One row of the backward: softmax block, then gradient block, tile in L1.
template <bool kWeighted, typename scalar_t, typename T>
RO_CPU_CLONES void grad_row(scalar_t* __restrict__ out, const scalar_t* __restrict__ src,
                            RowScratch<T>& r, const RowCoeffs<T>& rc, T dfsum, int64_t plane,
                            int64_t c, int64_t w) {
  int64_t j = 0;
  for (; j + kBlock <= w; j += kBlock) {
    softmax_block<kBlock, kWeighted>(src + j, plane, c, w, r.m + j, r.e + j, r.inv + j,
                                     r.f + j);
    grad_block<kBlock, kWeighted>(out + j, plane, c, w, r.m + j, r.e + j, r.inv + j, r.f + j,
                                  r.u + j, rc, dfsum);
  }
  if (j + kHalf <= w) {
    softmax_block<kHalf, kWeighted>(src + j, plane, c, w, r.m + j, r.e + j, r.inv + j,
                                    r.f + j);
    grad_block<kHalf, kWeighted>(out + j, plane, c, w, r.m + j, r.e + j, r.inv + j, r.f + j,
                                 r.u + j, rc, dfsum);
    j += kHalf;
  }
  for (; j < w; ++j) {
    softmax_block<1, kWeighted>(src + j, plane, c, w, r.m + j, r.e + j, r.inv + j, r.f + j);
    grad_block<1, kWeighted>(out + j, plane, c, w, r.m + j, r.e + j, r.inv + j, r.f + j,
                             r.u + j, rc, dfsum);
  }
}

// dL/dM of N pixels of a row from the saved softmax (s: channel 0 of the first pixel,
// leading dimension plane, as the logits src and the output out). The logits are read
// only in weighted mode (f and phi); the order of every sum is grad_block's, so the
// result equals the recomputing path bit for bit. out may be s itself (the gradient
// written over the saved softmax): every element of s is read before its own element of
// out is written, and the value written depends on it (so out and s are not restrict).
template <int N, bool kWeighted, typename scalar_t, typename T>
__attribute__((always_inline)) inline void grad_block_saved(
    scalar_t* out, const scalar_t* __restrict__ src, const T* s, int64_t plane, int64_t c,
    const T* __restrict__ u, const RowCoeffs<T>& rc, T dfsum) {
  T dot[N], phi[N], t[N], sp[N], fv[N];
#pragma omp simd
  for (int jj = 0; jj < N; ++jj) {
    dot[jj] = T(0);
    phi[jj] = dfsum;
    t[jj] = kWeighted ? -static_cast<T>(src[jj]) : T(0);
  }
  for (int64_t k = 1; k < c; ++k) {
    const T* sk = s + k * plane;
    const scalar_t* mk = src + k * plane;
    const T row = rc.row[k], b = rc.b[k], cc = rc.c[k], dq = rc.dq[k];
#pragma omp simd
    for (int jj = 0; jj < N; ++jj) {
      dot[jj] += sk[jj] * pm_grad_s<T>(row, b, cc, u[jj]);
      if constexpr (kWeighted) {
        const T v = static_cast<T>(mk[jj]);
        phi[jj] += dq * v;
        t[jj] += v;
      }
    }
  }
#pragma omp simd
  for (int jj = 0; jj < N; ++jj) {
    fv[jj] = kWeighted ? fast_sigmoid<T>(t[jj]) : T(0);
    sp[jj] = kWeighted ? phi[jj] * fv[jj] * (T(1) - fv[jj]) : T(0);
    out[jj] = static_cast<scalar_t>(-s[jj] * dot[jj] - sp[jj]);
  }
  part_grads<N, kWeighted>(out, plane, s, plane, c, u, rc, dot, fv, sp);
}

template <bool kWeighted, typename scalar_t, typename T>
RO_CPU_CLONES void grad_row_saved(scalar_t* out, const scalar_t* __restrict__ src, const T* s,
                                  const T* __restrict__ u,
                                  const RowCoeffs<T>& rc, T dfsum, int64_t plane, int64_t c,
                                  int64_t w) {
  int64_t j = 0;
  for (; j + kBlock <= w; j += kBlock)
    grad_block_saved<kBlock, kWeighted>(out + j, src + j, s + j, plane, c, u + j, rc, dfsum);
  if (j + kHalf <= w) {
    grad_block_saved<kHalf, kWeighted>(out + j, src + j, s + j, plane, c, u + j, rc, dfsum);
    j += kHalf;
  }
  for (; j < w; ++j)
    grad_block_saved<1, kWeighted>(out + j, src + j, s + j, plane, c, u + j, rc, dfsum);
}

template <bool kWeighted, bool kSave, typename scalar_t, typename T>
void forward_tasks(const scalar_t* lg, T* sm, double* partial, int64_t nb, int64_t c,
                   int64_t h, int64_t w, int64_t nblk) {
  const int64_t ns = kPmMoments * (c - 1) + 1, plane = h * w;
  at::parallel_for(0, nb * nblk, 1, [&](int64_t begin, int64_t end) {
    RowScratch<T> r(c, w);
    T sums[4];
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / nblk, h0 = (task % nblk) * kRows;
      const int64_t h1 = std::min(h, h0 + kRows);
      double* acc = partial + task * ns;
      std::fill(acc, acc + ns, 0.0);
      for (int64_t y = h0; y < h1; ++y) {
        const int64_t off = b * c * plane + y * w;
        softmax_row<kWeighted, scalar_t, T>(r, lg + off, plane, c, w);
        if constexpr (kSave) store_row<T>(r.e, r.inv, w, sm + off);
        const double v = pm_centred<double>(y, h);
        for (int64_t p = 1; p < c; ++p) {
          part_row_sums<kWeighted, kSave, T>(r.e + p * w, r.inv,
                                             r.m + p * w, r.f, r.u, w,
                                             sums, kSave ? sm + off + p * plane : nullptr);
          double* a = acc + (p - 1) * kPmMoments;
          const double rs = sums[0];
          a[0] += rs;
          a[1] += sums[1];
          a[2] += sums[2];
          a[3] += v * rs;
          a[4] += v * v * rs;
          a[5] += sums[3];
        }
        if constexpr (kWeighted) acc[ns - 1] += row_sum<T>(r.f, w);
      }
    }
  });
}

template <bool kWeighted, typename scalar_t, typename T>
void backward_tasks(scalar_t* out, const scalar_t* lg, const T* sm, const double* gr,
                    const double* st, int64_t nb, int64_t c, int64_t h, int64_t w,
                    int64_t nblk) {
  const int64_t k = c - 1, ns = kPmMoments * k + 1, plane = h * w;
  at::parallel_for(0, nb * nblk, 1, [&](int64_t begin, int64_t end) {
    RowScratch<T> r(c, w);
    RowCoeffs<T> rc(c);
    std::vector<PmCoeffs> co(static_cast<size_t>(k));
    int64_t coeff_b = -1;
    T dfsum = T(0);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / nblk, h0 = (task % nblk) * kRows;
      const int64_t h1 = std::min(h, h0 + kRows);
      if (b != coeff_b) {  // consecutive tasks of one image share its coefficients
        const double* sb = st + b * ns;
        double df = 0.0;
        for (int64_t p = 0; p < k; ++p) {
          co[p] = pm_coeffs(sb + p * kPmMoments, sb[ns - 1], gr + (b * k + p) * kPmFeatures, h,
                            w, kWeighted);
          df += co[p].dfsum;
        }
        dfsum = static_cast<T>(df);
        coeff_b = b;
      }
      for (int64_t y = h0; y < h1; ++y) {
        const int64_t off = b * c * plane + y * w;
        rc.set(co.data(), pm_centred<T>(y, h), c);
        if (sm != nullptr)
          grad_row_saved<kWeighted, scalar_t, T>(out + off, lg + off, sm + off, r.u, rc,
                                                 dfsum, plane, c, w);
        else
          grad_row<kWeighted, scalar_t, T>(out + off, lg + off, r, rc, dfsum, plane, c, w);
      }
    }
  });
}

}  // namespace

void part_moments_cpu(at::Tensor& features, at::Tensor& stats, at::Tensor& softmax,
                      const at::Tensor& logits, bool weighted) {
  const int64_t nb = logits.size(0), c = logits.size(1), h = logits.size(2), w = logits.size(3);
  const int64_t k = c - 1, ns = kPmMoments * k + 1;
  const int64_t nblk = (h + kRows - 1) / kRows;
  if (nb == 0) return;
  std::vector<double> partial(static_cast<size_t>(nb * nblk * ns));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(),
                                  "part_moments_cpu", [&] {
    using T = at::opmath_type<scalar_t>;
    const scalar_t* lg = logits.const_data_ptr<scalar_t>();
    double* pa = partial.data();
    if (softmax.numel() > 0) {
      T* sm = softmax.mutable_data_ptr<T>();
      if (weighted)
        forward_tasks<true, true, scalar_t, T>(lg, sm, pa, nb, c, h, w, nblk);
      else
        forward_tasks<false, true, scalar_t, T>(lg, sm, pa, nb, c, h, w, nblk);
    } else if (weighted) {
      forward_tasks<true, false, scalar_t, T>(lg, nullptr, pa, nb, c, h, w, nblk);
    } else {
      forward_tasks<false, false, scalar_t, T>(lg, nullptr, pa, nb, c, h, w, nblk);
    }
    // Per image: add the row blocks in order, then the features.
    double* st = stats.mutable_data_ptr<double>();
    scalar_t* ft = features.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, nb, 16, [&](int64_t begin, int64_t end) {
      double fe[kPmFeatures];
      for (int64_t b = begin; b < end; ++b) {
        double* sb = st + b * ns;
        std::fill(sb, sb + ns, 0.0);
        for (int64_t blk = 0; blk < nblk; ++blk) {
          const double* pb = partial.data() + (b * nblk + blk) * ns;
          for (int64_t i = 0; i < ns; ++i) sb[i] += pb[i];
        }
        for (int64_t p = 0; p < k; ++p) {
          pm_features(sb + p * kPmMoments, sb[ns - 1], h, w, weighted, fe);
          for (int q = 0; q < kPmFeatures; ++q)
            ft[(b * k + p) * kPmFeatures + q] = static_cast<scalar_t>(fe[q]);
        }
      }
    });
  });
}

void part_moments_backward_cpu(at::Tensor& grad_logits, const at::Tensor& grad,
                               const at::Tensor& logits, const at::Tensor& stats,
                               const at::Tensor& softmax, bool weighted) {
  const int64_t nb = logits.size(0), c = logits.size(1), h = logits.size(2), w = logits.size(3);
  const int64_t nblk = (h + kRows - 1) / kRows;
  if (nb == 0) return;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(),
                                  "part_moments_backward_cpu", [&] {
    using T = at::opmath_type<scalar_t>;
    const scalar_t* lg = logits.const_data_ptr<scalar_t>();
    const double* gr = grad.const_data_ptr<double>();
    const double* st = stats.const_data_ptr<double>();
    scalar_t* out = grad_logits.mutable_data_ptr<scalar_t>();
    const T* sm = softmax.numel() > 0 ? softmax.const_data_ptr<T>() : nullptr;
    if (weighted)
      backward_tasks<true, scalar_t, T>(out, lg, sm, gr, st, nb, c, h, w, nblk);
    else
      backward_tasks<false, scalar_t, T>(out, lg, sm, gr, st, nb, c, h, w, nblk);
  });
}

TORCH_LIBRARY_IMPL(robustops, CPU, m) {
  m.impl("part_moments", TORCH_FN(part_moments_op<&part_moments_cpu>));
  m.impl("part_moments_backward", TORCH_FN(part_moments_backward_op<&part_moments_backward_cpu>));
  m.impl("part_moments_backward_inplace",
         TORCH_FN(part_moments_backward_inplace_op<&part_moments_backward_cpu>));
}

}  // namespace robustops
