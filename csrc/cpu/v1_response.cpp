// CPU kernels of v1_response: at::parallel_for over rows, the math of kernels/v1_response.h.
//
// A "row" is one (sample, channel) plane for contiguous NCHW tensors and one
// (sample, pixel) channel vector for channels_last ones; either way every operand
// of a row segment (simple part, complex part) is contiguous in memory, and only
// the logical noise offset j = c*H*W + h*W + w advances by 1 (NCHW) or H*W
// (channels_last). Noise is drawn per chunk of kChunk elements into two small stack
// buffers (Box-Muller's -2 log u1 and cos 2 pi u2) by a libm-free loop that
// vectorises (it was 90% of the time with rng_normal's scalar log/cos: 39 -> 12 ns
// per normal with AVX2 here); the arithmetic loop then takes sqrt(radius2) * cos.
// Nothing here branches per element; the loops with a sqrt vectorise only when
// built with -fno-math-errno (GCC keeps errno's slow path as a branch otherwise).
#include "v1_response.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <kernels/counter_rng.h>
#include <kernels/v1_response.h>

// As in pgd_step.cpp: AVX-512, AVX2 and baseline clones, picked at load time.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define RO_CPU_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define RO_CPU_CLONES
#endif

namespace robustops {
namespace {

using namespace kernels;

// Elements per noise buffer (2 x 2 KiB of doubles): stays in L1 next to the operands.
constexpr int64_t kChunk = 256;
// Elements per parallel task (rows are grouped up to about this size).
constexpr int64_t kGrainElems = 32768;

// Box-Muller's parts for offsets j0, j0 + jstep, ...: radius2 = -2 log u1, cosine = cos 2 pi u2.
RO_CPU_CLONES void fill_box_muller(double* __restrict__ radius2, double* __restrict__ cosine,
                                   int64_t len, int64_t j0, int64_t jstep, uint32_t row1,
                                   uint32_t row2) {
#pragma omp simd
  for (int64_t i = 0; i < len; ++i) {
    const int64_t j = j0 + i * jstep;
    radius2[i] = v1_bm_radius2(row1, j);
    cosine[i] = v1_bm_cos(row2, j);
  }
}

// The normal of element i (rng_normal's value, rounded to the compute type).
template <typename opmath_t>
inline opmath_t normal_at(const double* radius2, const double* cosine, int64_t i) {
  return static_cast<opmath_t>(ro_sqrt(radius2[i]) * cosine[i]);
}

// out[i] = y(a[i], b[i]) on one contiguous run. b is unused (nullptr) for simple cells.
template <typename scalar_t, typename opmath_t, bool kComplex, bool kNoise>
RO_CPU_CLONES void fwd_run(scalar_t* __restrict__ out, const scalar_t* __restrict__ a,
                           const scalar_t* __restrict__ b, const double* __restrict__ radius2,
                           const double* __restrict__ cosine, int64_t len, opmath_t k,
                           opmath_t s, opmath_t l) {
#pragma omp simd
  for (int64_t i = 0; i < len; ++i) {
    const opmath_t av = static_cast<opmath_t>(a[i]);
    opmath_t x;
    if constexpr (kComplex) {
      x = v1_complex<opmath_t>(av, static_cast<opmath_t>(b[i]), k);
    } else {
      x = v1_simple<opmath_t>(av, k);
    }
    if constexpr (kNoise) x = v1_noise<opmath_t>(x, normal_at<opmath_t>(radius2, cosine, i), s, l);
    out[i] = static_cast<scalar_t>(x);
  }
}

// grad_a[i] (and grad_b[i] for complex cells) from grad_out[i] on one contiguous run;
// b and gb are unused (nullptr) for simple cells.
template <typename scalar_t, typename opmath_t, bool kComplex, bool kNoise>
RO_CPU_CLONES void bwd_run(scalar_t* __restrict__ ga, scalar_t* __restrict__ gb,
                           const scalar_t* __restrict__ go, const scalar_t* __restrict__ a,
                           const scalar_t* __restrict__ b, const double* __restrict__ radius2,
                           const double* __restrict__ cosine, int64_t len, opmath_t k,
                           opmath_t s, opmath_t l) {
#pragma omp simd
  for (int64_t i = 0; i < len; ++i) {
    const opmath_t av = static_cast<opmath_t>(a[i]);
    opmath_t g = static_cast<opmath_t>(go[i]);
    if constexpr (kComplex) {
      const opmath_t bv = static_cast<opmath_t>(b[i]);
      if constexpr (kNoise) {
        g *= v1_noise_grad<opmath_t>(v1_complex<opmath_t>(av, bv, k),
                                     normal_at<opmath_t>(radius2, cosine, i), s, l);
      }
      const opmath_t f = v1_complex_grad_factor<opmath_t>(av, bv, k, g);
      ga[i] = static_cast<scalar_t>(f * av);
      gb[i] = static_cast<scalar_t>(f * bv);
    } else {
      if constexpr (kNoise) {
        g *= v1_noise_grad<opmath_t>(v1_simple<opmath_t>(av, k),
                                     normal_at<opmath_t>(radius2, cosine, i), s, l);
      }
      ga[i] = static_cast<scalar_t>(v1_simple_grad<opmath_t>(av, k, g));
    }
  }
}

// The scalars in the compute type.
template <typename opmath_t>
struct Ctx {
  opmath_t k, s, l;
  bool noise;
};

// One segment of a row: len elements whose noise offsets are j0, j0 + jstep, ...
// Chunks of kChunk: draw the normals, then run the vectorised loop on them.
template <typename scalar_t, typename opmath_t, bool kComplex>
void fwd_segment(scalar_t* out, const scalar_t* a, const scalar_t* b, int64_t len, int64_t j0,
                 int64_t jstep, uint32_t row1, uint32_t row2, const Ctx<opmath_t>& c) {
  if (!c.noise) {
    fwd_run<scalar_t, opmath_t, kComplex, false>(out, a, b, nullptr, nullptr, len, c.k, c.s,
                                                 c.l);
    return;
  }
  double radius2[kChunk], cosine[kChunk];
  for (int64_t i0 = 0; i0 < len; i0 += kChunk) {
    const int64_t m = std::min(kChunk, len - i0);
    fill_box_muller(radius2, cosine, m, j0 + i0 * jstep, jstep, row1, row2);
    fwd_run<scalar_t, opmath_t, kComplex, true>(out + i0, a + i0, kComplex ? b + i0 : nullptr,
                                                radius2, cosine, m, c.k, c.s, c.l);
  }
}

template <typename scalar_t, typename opmath_t, bool kComplex>
void bwd_segment(scalar_t* ga, scalar_t* gb, const scalar_t* go, const scalar_t* a,
                 const scalar_t* b, int64_t len, int64_t j0, int64_t jstep, uint32_t row1,
                 uint32_t row2, const Ctx<opmath_t>& c) {
  if (!c.noise) {
    bwd_run<scalar_t, opmath_t, kComplex, false>(ga, gb, go, a, b, nullptr, nullptr, len, c.k,
                                                 c.s, c.l);
    return;
  }
  double radius2[kChunk], cosine[kChunk];
  for (int64_t i0 = 0; i0 < len; i0 += kChunk) {
    const int64_t m = std::min(kChunk, len - i0);
    fill_box_muller(radius2, cosine, m, j0 + i0 * jstep, jstep, row1, row2);
    bwd_run<scalar_t, opmath_t, kComplex, true>(ga + i0, kComplex ? gb + i0 : nullptr, go + i0,
                                                a + i0, kComplex ? b + i0 : nullptr, radius2,
                                                cosine, m, c.k, c.s, c.l);
  }
}

// Shapes of the problem and the row walk shared by forward and backward.
struct Geometry {
  int64_t batch, c0, simple, complex, hw;
  bool channels_last;
  int64_t rows() const { return batch * (channels_last ? hw : c0); }
  int64_t row_len() const { return channels_last ? c0 : hw; }
};

Geometry geometry(const at::Tensor& q0, const V1Params& p) {
  Geometry g;
  g.batch = q0.size(0);
  g.c0 = q0.size(1);
  g.simple = p.simple;
  g.complex = g.c0 - p.simple;
  g.hw = q0.size(2) * q0.size(3);
  g.channels_last = p.channels_last;
  return g;
}

// Calls seg(simple?, offset in q0-like tensors, offset in q1-like tensors, len, j0, jstep,
// row1, row2) for every segment, in parallel over rows. The counter rows are
// recomputed only when the sample changes.
template <typename Seg>
void for_each_segment(const Geometry& g, const V1Params& p, const int64_t* index, Seg seg) {
  const int64_t rows = g.rows();
  const int64_t grain = std::max<int64_t>(1, kGrainElems / std::max<int64_t>(g.row_len(), 1));
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    int64_t cur_b = -1;
    uint32_t row1 = 0, row2 = 0;
    const int64_t per_sample = g.channels_last ? g.hw : g.c0;
    for (int64_t r = begin; r < end; ++r) {
      const int64_t bi = r / per_sample;
      const int64_t t = r - bi * per_sample;  // channel (NCHW) or pixel (channels_last)
      if (p.noise && bi != cur_b) {
        row1 = rng_row(p.base1, index[bi]);
        row2 = rng_row(p.base2, index[bi]);
        cur_b = bi;
      }
      if (!g.channels_last) {
        const int64_t off0 = r * g.hw;
        if (t < g.simple) {
          seg(false, off0, int64_t(0), g.hw, t * g.hw, int64_t(1), row1, row2);
        } else {
          const int64_t off1 = (bi * g.complex + (t - g.simple)) * g.hw;
          seg(true, off0, off1, g.hw, t * g.hw, int64_t(1), row1, row2);
        }
      } else {
        const int64_t off0 = r * g.c0;
        if (g.simple > 0) seg(false, off0, int64_t(0), g.simple, t, g.hw, row1, row2);
        if (g.complex > 0) {
          seg(true, off0 + g.simple, r * g.complex, g.complex, g.simple * g.hw + t, g.hw, row1,
              row2);
        }
      }
    }
  });
}

}  // namespace

void v1_response_cpu(at::Tensor& out, const at::Tensor& q0, const at::Tensor& q1,
                     const at::Tensor& index, const V1Params& p) {
  if (out.numel() == 0) return;
  const Geometry g = geometry(q0, p);
  const int64_t* idx = p.noise ? index.const_data_ptr<int64_t>() : nullptr;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, q0.scalar_type(), "v1_response_cpu",
                                  [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const Ctx<opmath_t> c{static_cast<opmath_t>(p.k_exc), static_cast<opmath_t>(p.noise_scale),
                          static_cast<opmath_t>(p.noise_level), p.noise};
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    const scalar_t* a = q0.const_data_ptr<scalar_t>();
    const scalar_t* b = g.complex > 0 ? q1.const_data_ptr<scalar_t>() : a;
    for_each_segment(g, p, idx, [&](bool cplx, int64_t off0, int64_t off1, int64_t len,
                                    int64_t j0, int64_t jstep, uint32_t row1, uint32_t row2) {
      if (cplx) {
        fwd_segment<scalar_t, opmath_t, true>(o + off0, a + off0, b + off1, len, j0, jstep, row1,
                                              row2, c);
      } else {
        fwd_segment<scalar_t, opmath_t, false>(o + off0, a + off0, nullptr, len, j0, jstep, row1,
                                               row2, c);
      }
    });
  });
}

void v1_response_backward_cpu(at::Tensor& grad_q0, at::Tensor& grad_q1,
                              const at::Tensor& grad_out, const at::Tensor& q0,
                              const at::Tensor& q1, const at::Tensor& index, const V1Params& p) {
  if (q0.numel() == 0) return;
  const Geometry g = geometry(q0, p);
  const int64_t* idx = p.noise ? index.const_data_ptr<int64_t>() : nullptr;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, q0.scalar_type(),
                                  "v1_response_backward_cpu", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const Ctx<opmath_t> c{static_cast<opmath_t>(p.k_exc), static_cast<opmath_t>(p.noise_scale),
                          static_cast<opmath_t>(p.noise_level), p.noise};
    scalar_t* ga = grad_q0.mutable_data_ptr<scalar_t>();
    scalar_t* gb = g.complex > 0 ? grad_q1.mutable_data_ptr<scalar_t>() : ga;
    const scalar_t* go = grad_out.const_data_ptr<scalar_t>();
    const scalar_t* a = q0.const_data_ptr<scalar_t>();
    const scalar_t* b = g.complex > 0 ? q1.const_data_ptr<scalar_t>() : a;
    for_each_segment(g, p, idx, [&](bool cplx, int64_t off0, int64_t off1, int64_t len,
                                    int64_t j0, int64_t jstep, uint32_t row1, uint32_t row2) {
      if (cplx) {
        bwd_segment<scalar_t, opmath_t, true>(ga + off0, gb + off1, go + off0, a + off0,
                                              b + off1, len, j0, jstep, row1, row2, c);
      } else {
        bwd_segment<scalar_t, opmath_t, false>(ga + off0, nullptr, go + off0, a + off0, nullptr,
                                               len, j0, jstep, row1, row2, c);
      }
    });
  });
}

}  // namespace robustops
