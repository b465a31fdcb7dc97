// CPU kernels of v1_response: at::parallel_for over rows, the math of kernels/v1_response.h.
//
// A "row" is one (sample, channel) plane for contiguous NCHW tensors and one
// (sample, pixel) channel vector for channels_last ones; either way every operand
// of a row segment (simple part, complex part) is contiguous in memory, and only
// the logical noise offset j = c*H*W + h*W + w advances by 1 (NCHW) or H*W
// (channels_last). Noise is drawn per chunk of kChunk elements into small stack
// buffers by libm-free loops that vectorise (v1_noise_pair: one hash pair, log, sqrt
// and sincos per Box-Muller pair, i.e. per two elements; in float for float/half/
// bfloat16, 8 AVX2 lanes); the arithmetic loop then reads the normals. Nothing here
// branches per element; the loops with a sqrt vectorise only when built with
// -fno-math-errno (GCC keeps errno's slow path as a branch otherwise).
#include "v1_response.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <type_traits>

#include <kernels/counter_rng.h>
#include <kernels/v1_response.h>

// As in pgd_step.cpp: AVX-512, AVX2 and baseline clones, picked at load time.
#include "cpu/target_clones.h"

namespace robustops {
namespace {

using namespace kernels;

// Elements per noise buffer (1 KiB of floats or 2 KiB of doubles, per buffer): stays
// in L1 next to the operands. Even, so a chunk's first offset keeps its row's parity.
constexpr int64_t kChunk = 256;
// Elements per parallel task (rows are grouped up to about this size).
constexpr int64_t kGrainElems = 32768;

// The Box-Muller precision of a compute type: float for float (half and bfloat16
// compute in float), double for double.
template <typename opmath_t>
using bm_t = std::conditional_t<std::is_same_v<opmath_t, double>, double, float>;

// Normals of pairs p0 .. p0 + npairs - 1, interleaved: n[2i] = n_{2(p0+i)}, n[2i+1] = n_{2(p0+i)+1}.
template <typename T>
RO_CPU_CLONES void fill_pairs(T* __restrict__ n, int64_t npairs, uint32_t p0, uint32_t row1,
                              uint32_t row2) {
#pragma omp simd
  for (int64_t i = 0; i < npairs; ++i) {
    T ne, no;
    v1_noise_pair<T>(row1, row2, p0 + static_cast<uint32_t>(i), &ne, &no);
    n[2 * i] = ne;
    n[2 * i + 1] = no;
  }
}

// Both normals of pairs p0, p0 + pstep, ...: even[i] (cosine) and odd[i] (sine).
template <typename T>
RO_CPU_CLONES void fill_pairs_split(T* __restrict__ even, T* __restrict__ odd, int64_t len,
                                    uint32_t p0, uint32_t pstep, uint32_t row1, uint32_t row2) {
#pragma omp simd
  for (int64_t i = 0; i < len; ++i) {
    v1_noise_pair<T>(row1, row2, p0 + static_cast<uint32_t>(i) * pstep, even + i, odd + i);
  }
}

// The normals of elements j0, j0 + jstep, ... one by one (a whole pair per element).
template <typename T>
RO_CPU_CLONES void fill_elements(T* __restrict__ n, int64_t len, int64_t j0, int64_t jstep,
                                 uint32_t row1, uint32_t row2) {
#pragma omp simd
  for (int64_t i = 0; i < len; ++i) n[i] = v1_noise_normal<T>(row1, row2, j0 + i * jstep);
}

// out[i] = y(a[i], b[i]) on one contiguous run with normals n[i] (kNoise). b is unused
// (nullptr) for simple cells.
template <typename scalar_t, typename opmath_t, bool kComplex, bool kNoise>
RO_CPU_CLONES void fwd_run(scalar_t* __restrict__ out, const scalar_t* __restrict__ a,
                           const scalar_t* __restrict__ b, const bm_t<opmath_t>* __restrict__ n,
                           int64_t len, opmath_t k, opmath_t s, opmath_t l) {
#pragma omp simd
  for (int64_t i = 0; i < len; ++i) {
    const opmath_t av = static_cast<opmath_t>(a[i]);
    opmath_t x;
    if constexpr (kComplex) {
      x = v1_complex<opmath_t>(av, static_cast<opmath_t>(b[i]), k);
    } else {
      x = v1_simple<opmath_t>(av, k);
    }
    if constexpr (kNoise) x = v1_noise<opmath_t>(x, static_cast<opmath_t>(n[i]), s, l);
    out[i] = static_cast<scalar_t>(x);
  }
}

// grad_a[i] (and grad_b[i] for complex cells) from grad_out[i] on one contiguous run;
// b and gb are unused (nullptr) for simple cells.
template <typename scalar_t, typename opmath_t, bool kComplex, bool kNoise>
RO_CPU_CLONES void bwd_run(scalar_t* __restrict__ ga, scalar_t* __restrict__ gb,
                           const scalar_t* __restrict__ go, const scalar_t* __restrict__ a,
                           const scalar_t* __restrict__ b, const bm_t<opmath_t>* __restrict__ n,
                           int64_t len, opmath_t k, opmath_t s, opmath_t l) {
#pragma omp simd
  for (int64_t i = 0; i < len; ++i) {
    const opmath_t av = static_cast<opmath_t>(a[i]);
    opmath_t g = static_cast<opmath_t>(go[i]);
    if constexpr (kComplex) {
      const opmath_t bv = static_cast<opmath_t>(b[i]);
      if constexpr (kNoise) {
        g *= v1_noise_grad<opmath_t>(v1_complex<opmath_t>(av, bv, k),
                                     static_cast<opmath_t>(n[i]), s, l);
      }
      const opmath_t f = v1_complex_grad_factor<opmath_t>(av, bv, k, g);
      ga[i] = static_cast<scalar_t>(f * av);
      gb[i] = static_cast<scalar_t>(f * bv);
    } else {
      if constexpr (kNoise) {
        g *= v1_noise_grad<opmath_t>(v1_simple<opmath_t>(av, k), static_cast<opmath_t>(n[i]),
                                     s, l);
      }
      ga[i] = static_cast<scalar_t>(v1_simple_grad<opmath_t>(av, k, g));
    }
  }
}

// Shapes of the problem and the row walk shared by forward and backward.
struct Geometry {
  int64_t batch, c0, simple, complex, hw;
  bool channels_last;
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

// Walks the tensor in contiguous runs and calls
//   body(complex?, offset in q0-like tensors, offset in q1-like tensors, len, normals)
// with normals (T, nullptr when noise is off) of the run's len elements; in parallel.
//   NCHW: a task is a (sample, channel) plane, j = c*H*W + pixel advances by 1, so
//     consecutive elements share Box-Muller pairs: each chunk draws its pairs once.
//   channels_last: a task is a (sample, pixel) channel vector, j advances by H*W.
//     With H*W even, pixels 2m and 2m + 1 of a channel form one pair (cosine, sine),
//     so a task takes those two pixels and each pair serves both; with H*W odd a
//     pair's partner is another pixel's or channel's, and each element draws its own.
// The counter rows are recomputed only when the sample changes.
template <typename T, typename Body>
void walk(const Geometry& g, const V1Params& p, const int64_t* index, Body body) {
  const bool cl = g.channels_last;
  const bool pixel_pairs = cl && p.noise && g.hw % 2 == 0;
  const int64_t per_sample = !cl ? g.c0 : (pixel_pairs ? g.hw / 2 : g.hw);
  const int64_t unit_len = !cl ? g.hw : (pixel_pairs ? 2 * g.c0 : g.c0);
  const int64_t units = g.batch * per_sample;
  const int64_t grain = std::max<int64_t>(1, kGrainElems / std::max<int64_t>(unit_len, 1));
  at::parallel_for(0, units, grain, [&](int64_t begin, int64_t end) {
    T buf[kChunk + 2], buf2[kChunk];
    int64_t cur_b = -1;
    uint32_t row1 = 0, row2 = 0;
    for (int64_t u = begin; u < end; ++u) {
      const int64_t bi = u / per_sample;
      const int64_t t = u - bi * per_sample;  // channel (NCHW), pixel or pixel pair (CL)
      if (p.noise && bi != cur_b) {
        const int64_t gi = index != nullptr ? index[bi] : bi;  // no index: 0..B-1
        row1 = rng_row(p.base1, gi);
        row2 = rng_row(p.base2, gi);
        cur_b = bi;
      }
      if (!cl) {
        const bool cplx = t >= g.simple;
        const int64_t off0 = u * g.hw;
        const int64_t off1 = cplx ? (bi * g.complex + (t - g.simple)) * g.hw : 0;
        if (!p.noise) {
          body(cplx, off0, off1, g.hw, static_cast<const T*>(nullptr));
          continue;
        }
        const int64_t j0 = t * g.hw;
        for (int64_t i0 = 0; i0 < g.hw; i0 += kChunk) {
          const int64_t m = std::min(kChunk, g.hw - i0);
          const int64_t first = (j0 + i0) >> 1, last = (j0 + i0 + m - 1) >> 1;
          fill_pairs<T>(buf, last - first + 1, static_cast<uint32_t>(first), row1, row2);
          body(cplx, off0 + i0, off1 + i0, m, buf + ((j0 + i0) & 1));
        }
        continue;
      }
      // channels_last: the simple channels [0, S), then the complex ones [S, C0).
      for (int part = 0; part < 2; ++part) {
        const bool cplx = part == 1;
        const int64_t cs = cplx ? g.simple : 0, len = cplx ? g.complex : g.simple;
        if (len == 0) continue;
        if (!pixel_pairs) {
          const int64_t off0 = u * g.c0 + cs, off1 = u * g.complex;
          if (!p.noise) {
            body(cplx, off0, off1, len, static_cast<const T*>(nullptr));
            continue;
          }
          for (int64_t i0 = 0; i0 < len; i0 += kChunk) {
            const int64_t m = std::min(kChunk, len - i0);
            fill_elements<T>(buf, m, (cs + i0) * g.hw + t, g.hw, row1, row2);
            body(cplx, off0 + i0, off1 + i0, m, static_cast<const T*>(buf));
          }
          continue;
        }
        // Pixels 2t and 2t + 1 (rows r and r + 1): pair p = c*H*W/2 + t of channel c.
        const int64_t r = bi * g.hw + 2 * t, half = g.hw / 2;
        for (int64_t i0 = 0; i0 < len; i0 += kChunk) {
          const int64_t m = std::min(kChunk, len - i0);
          fill_pairs_split<T>(buf, buf2, m, static_cast<uint32_t>((cs + i0) * half + t),
                              static_cast<uint32_t>(half), row1, row2);
          body(cplx, r * g.c0 + cs + i0, r * g.complex + i0, m, static_cast<const T*>(buf));
          body(cplx, (r + 1) * g.c0 + cs + i0, (r + 1) * g.complex + i0, m,
               static_cast<const T*>(buf2));
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
  const int64_t* idx = p.noise && index.defined() ? index.const_data_ptr<int64_t>() : nullptr;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, q0.scalar_type(), "v1_response_cpu",
                                  [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    using T = bm_t<opmath_t>;
    const opmath_t k = static_cast<opmath_t>(p.k_exc), s = static_cast<opmath_t>(p.noise_scale),
                   l = static_cast<opmath_t>(p.noise_level);
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    const scalar_t* a = q0.const_data_ptr<scalar_t>();
    const scalar_t* b = g.complex > 0 ? q1.const_data_ptr<scalar_t>() : a;
    walk<T>(g, p, idx, [&](bool cplx, int64_t off0, int64_t off1, int64_t len, const T* n) {
      if (n != nullptr) {
        if (cplx) {
          fwd_run<scalar_t, opmath_t, true, true>(o + off0, a + off0, b + off1, n, len, k, s, l);
        } else {
          fwd_run<scalar_t, opmath_t, false, true>(o + off0, a + off0, nullptr, n, len, k, s, l);
        }
      } else if (cplx) {
        fwd_run<scalar_t, opmath_t, true, false>(o + off0, a + off0, b + off1, n, len, k, s, l);
      } else {
        fwd_run<scalar_t, opmath_t, false, false>(o + off0, a + off0, nullptr, n, len, k, s, l);
      }
    });
  });
}

void v1_response_backward_cpu(at::Tensor& grad_q0, at::Tensor& grad_q1,
                              const at::Tensor& grad_out, const at::Tensor& q0,
                              const at::Tensor& q1, const at::Tensor& index, const V1Params& p) {
  if (q0.numel() == 0) return;
  const Geometry g = geometry(q0, p);
  const int64_t* idx = p.noise && index.defined() ? index.const_data_ptr<int64_t>() : nullptr;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, q0.scalar_type(),
                                  "v1_response_backward_cpu", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    using T = bm_t<opmath_t>;
    const opmath_t k = static_cast<opmath_t>(p.k_exc), s = static_cast<opmath_t>(p.noise_scale),
                   l = static_cast<opmath_t>(p.noise_level);
    scalar_t* ga = grad_q0.mutable_data_ptr<scalar_t>();
    scalar_t* gb = g.complex > 0 ? grad_q1.mutable_data_ptr<scalar_t>() : ga;
    const scalar_t* go = grad_out.const_data_ptr<scalar_t>();
    const scalar_t* a = q0.const_data_ptr<scalar_t>();
    const scalar_t* b = g.complex > 0 ? q1.const_data_ptr<scalar_t>() : a;
    walk<T>(g, p, idx, [&](bool cplx, int64_t off0, int64_t off1, int64_t len, const T* n) {
      if (n != nullptr) {
        if (cplx) {
          bwd_run<scalar_t, opmath_t, true, true>(ga + off0, gb + off1, go + off0, a + off0,
                                                  b + off1, n, len, k, s, l);
        } else {
          bwd_run<scalar_t, opmath_t, false, true>(ga + off0, nullptr, go + off0, a + off0,
                                                   nullptr, n, len, k, s, l);
        }
      } else if (cplx) {
        bwd_run<scalar_t, opmath_t, true, false>(ga + off0, gb + off1, go + off0, a + off0,
                                                 b + off1, n, len, k, s, l);
      } else {
        bwd_run<scalar_t, opmath_t, false, false>(ga + off0, nullptr, go + off0, a + off0,
                                                  nullptr, n, len, k, s, l);
      }
    });
  });
}

TORCH_LIBRARY_IMPL(robustops, CPU, m) {
  m.impl("v1_response", TORCH_FN(v1_response_op<&v1_response_cpu>));
  m.impl("v1_response_backward",
         TORCH_FN(v1_response_backward_op<&v1_response_backward_cpu>));
}

}  // namespace robustops
