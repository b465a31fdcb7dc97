// v1_response: the per-element math of the fused VOneNet V1 epilogue.
//
//   simple  (c <  S): x = k * relu(q0)
//   complex (c >= S): x = k * sqrt(q0^2 + q1^2) / sqrt(2)
//   noise on:         r = s x + l;  r += n * sqrt(relu(r) + 1e-4);  y = relu((r - l) / s)
//   noise off:        y = x
//
// Non-finite and extreme inputs (one behaviour on every backend): relu(NaN) = NaN,
// so a NaN in q0 or q1 gives NaN (with or without noise). The complex cell's
// sqrt(q0^2 + q1^2) is computed hypot-style (v1_energy): both operands are scaled by
// a power of two when the larger is huge or tiny, so no square overflows or
// underflows, and the value is that of the exact formula rounded as usual wherever
// the formula does not overflow; it is +inf only where the energy itself exceeds the
// compute type's range (or an input is +-inf).
//
// n is a standard normal keyed by (seed, global sample index, logical NCHW offset
// j = c*H*W + h*W + w), so it does not depend on layout or batch split: element j is
// one of the two Box-Muller normals of pair p = j >> 1 (cosine for even j, sine for
// odd j) on the counter uniforms of kernels/counter_rng.h (see "noise normals"
// below). Single source of truth for the formula: the CPU loops
// (csrc/cpu/v1_response.cpp) and CUDA kernels (csrc/cuda/v1_response.cu) call these
// functions; the Triton kernel (robustops/triton/v1_response.py) and the reference
// (robustops/ops/v1_response.py, v1_noise_normals) restate them.
//
// Backward: n is a constant; sqrt(relu(r) + 1e-4) is differentiated (VOneNet keeps
// it in the graph); relu'(0) = 0; d|q|/dq = 0 at q0 = q1 = 0 (no NaN).
// Every function is branch-free (comparisons become selects) so CPU loops vectorise.
#pragma once
#include <stdint.h>
#include <string.h>

#include "common.h"
#include "counter_rng.h"
#include "vector_math.h"

namespace robustops {
namespace kernels {

constexpr double kV1InvSqrt2 = 0.70710678118654752440;
constexpr double kV1NoiseEps = 1e-4;

// relu that propagates NaN (as torch.relu): NaN < 0 is false.
template <typename T>
RO_HOST_DEVICE inline T v1_max0(T v) { return v < T(0) ? T(0) : v; }

// Power-of-two scales of v1_energy for the compute type T: when max(|a|, |b|) is
// above kBig (its square could overflow once doubled) the operands are multiplied by
// kDown, when below kSmall (its square could underflow) by kUp. Both are exact.
template <typename T>
struct V1EnergyScale {  // float: |v| in (2^62, 2^128) -> (2^-4, 2^62)
  static constexpr double kBig = 0x1p62;
  static constexpr double kSmall = 0x1p-62;
  static constexpr double kDown = 0x1p-66;
  static constexpr double kUp = 0x1p66;
};
template <>
struct V1EnergyScale<double> {  // double: 2^510 / 2^-510 thresholds, 2^-514 / 2^514 scales
  static constexpr double kBig = 0x1p510;
  static constexpr double kSmall = 0x1p-510;
  static constexpr double kDown = 0x1p-514;
  static constexpr double kUp = 0x1p514;
};

// sqrt(a^2 + b^2) without intermediate overflow or underflow (branch-free): scale by an
// exact power of two, take the root, scale back. NaN in -> NaN out; +-inf -> +inf.
template <typename T>
RO_HOST_DEVICE inline T v1_energy(T a, T b) {
  using S = V1EnergyScale<T>;
  const T aa = ro_abs(a), ab = ro_abs(b);
  const T m = aa < ab ? ab : aa;
  const bool big = m > T(S::kBig), small = m < T(S::kSmall);
  const T s = big ? T(S::kDown) : (small ? T(S::kUp) : T(1));
  const T inv = big ? T(S::kUp) : (small ? T(S::kDown) : T(1));
  const T as = a * s, bs = b * s;
  return ro_sqrt(as * as + bs * bs) * inv;
}

// Simple cell: k * relu(a).
template <typename T>
RO_HOST_DEVICE inline T v1_simple(T a, T k) {
  return k * v1_max0(a);
}

// Complex cell: the quadrature pair's energy, k * sqrt(a^2 + b^2) * (1/sqrt 2).
template <typename T>
RO_HOST_DEVICE inline T v1_complex(T a, T b, T k) {
  return k * v1_energy(a, b) * T(kV1InvSqrt2);
}

// Poisson-like neuronal noise around the rate x: variance relu(s x + l) + 1e-4 in
// the scaled domain, then mapped back and rectified.
template <typename T>
RO_HOST_DEVICE inline T v1_noise(T x, T n, T s, T l) {
  const T r0 = s * x + l;
  const T r = r0 + n * ro_sqrt(v1_max0(r0) + T(kV1NoiseEps));
  return v1_max0((r - l) / s);
}

// d v1_noise / d x (n constant): [y_pre > 0] * (1 + n [r0 > 0] / (2 sqrt(relu(r0) + 1e-4))).
// The s of dr/dx and the 1/s of the inverse affine cancel.
template <typename T>
RO_HOST_DEVICE inline T v1_noise_grad(T x, T n, T s, T l) {
  const T r0 = s * x + l;
  const T root = ro_sqrt(v1_max0(r0) + T(kV1NoiseEps));
  const T r = r0 + n * root;
  const T active = T((r - l) / s > T(0));
  const T droot = T(r0 > T(0)) * T(0.5) / root;
  return active * (T(1) + n * droot);
}

// Simple cell backward: dL/da = g * k * [a > 0], with g = dL/dx.
template <typename T>
RO_HOST_DEVICE inline T v1_simple_grad(T a, T k, T g) {
  return g * k * T(a > T(0));
}

// Complex cell backward: the common factor g * k / (sqrt(2) |q|), 0 where |q| = 0;
// multiply it by a (for q0) and b (for q1).
template <typename T>
RO_HOST_DEVICE inline T v1_complex_grad_factor(T a, T b, T k, T g) {
  const T e = v1_energy(a, b);
  const T safe = e > T(0) ? e : T(1);
  const T inv = e > T(0) ? T(1) / safe : T(0);
  return g * k * T(kV1InvSqrt2) * inv;
}

// ----------------------------------------------------------------------------- noise normals
//
// Box-Muller pairs: pair p = j >> 1 of element j draws u1 = rng_uniform(row1, p) and
// u2 = rng_uniform(row2, p) (kernels/counter_rng.h) and gives TWO normals,
//     R = sqrt(-2 log u1),  n_{2p} = R cos(2 pi u2),  n_{2p+1} = R sin(2 pi u2),
// so one hash pair, one log and one sqrt serve two elements. T is the Box-Muller's
// precision: double for float64 outputs, float for float32/half/bfloat16 ones (about
// 1.8x faster on the CPU: 8 AVX2 lanes instead of 4). Checked here: on all 2^23
// possible uniforms the float log is within 1 ulp and the float sin/cos within 2 ulp
// of the correctly rounded values; on 2^26 draws the float normals are within 3 ulp
// of the double ones rounded (96% within 1 ulp).
//
// CUDA uses its libm (log/logf, sincospi/sincospif on the exact 2 u2). The CPU uses
// the libm-free, branch-free vm_log and vm_sincos_2pi of kernels/vector_math.h so its
// loops vectorise (vm_sincos_2pi reduces by quarter turns in u, exact since u2 is a
// multiple of 2^-24, so sin and cos keep full relative accuracy near their zeros).

// rng_uniform(row, p) in T (exact in float too: 24 significant bits), converted
// through int32 (the 23 bits fit): x86 before AVX-512 has no vector uint32 -> double.
template <typename T>
RO_HOST_DEVICE inline T v1_uniform(uint32_t row, uint32_t p) {
  const int32_t k = static_cast<int32_t>(rng_bits(row, p) >> 9);
  return (static_cast<T>(k) + T(0.5)) * T(1.0 / 8388608.0);
}

#if defined(__CUDA_ARCH__)
__device__ inline double v1_device_log(double x) { return ::log(x); }
__device__ inline float v1_device_log(float x) { return ::logf(x); }
__device__ inline void v1_device_sincospi(double x, double* s, double* c) { ::sincospi(x, s, c); }
__device__ inline void v1_device_sincospi(float x, float* s, float* c) { ::sincospif(x, s, c); }
#endif

// Box-Muller pair p: *n_even = n_{2p} = R cos(2 pi u2), *n_odd = n_{2p+1} = R sin(2 pi u2).
template <typename T>
RO_HOST_DEVICE inline void v1_noise_pair(uint32_t row1, uint32_t row2, uint32_t p, T* n_even,
                                         T* n_odd) {
  const T u1 = v1_uniform<T>(row1, p);
  const T u2 = v1_uniform<T>(row2, p);
  T s, c;
#if defined(__CUDA_ARCH__)
  const T radius = ::sqrt(T(-2) * v1_device_log(u1));
  v1_device_sincospi(T(2) * u2, &s, &c);  // 2 u2 is exact
#else
  const T radius = ro_sqrt(T(-2) * vm_log(u1));
  vm_sincos_2pi(u2, &s, &c);
#endif
  *n_even = radius * c;
  *n_odd = radius * s;
}

// The normal of logical element j alone: its pair's cosine (j even) or sine (j odd).
template <typename T>
RO_HOST_DEVICE inline T v1_noise_normal(uint32_t row1, uint32_t row2, int64_t j) {
  T ne, no;
  v1_noise_pair<T>(row1, row2, static_cast<uint32_t>(j >> 1), &ne, &no);
  return vm_select((j & 1) != 0, no, ne);
}

}  // namespace kernels
}  // namespace robustops
