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

// The noise functions are large: force them inline so the CPU's target_clones loops
// that call them vectorise (GCC's size limits would leave calls that block it).
#if defined(__GNUC__) || defined(__clang__)
#define RO_V1_INLINE __attribute__((always_inline)) inline
#else
#define RO_V1_INLINE inline
#endif

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
// the libm-free, branch-free restatements below so its loops vectorise: v1_log
// (fdlibm's e_log.c, and e_logf.c for float) and v1_sincos_2pi, which reduces by quarter
// turns in u (exact: u2 is a multiple of 2^-24) before the polynomials, so sin and
// cos keep full relative accuracy near their zeros. Selects are integer blends: with
// -ftrapping-math GCC will not if-convert a ?: whose arms it would have to compute
// speculatively.

template <typename To, typename From>
RO_HOST_DEVICE RO_V1_INLINE To v1_bitcast(From v) {
  To t;
  memcpy(&t, &v, sizeof(t));
  return t;
}

// c ? a : b without a branch.
RO_HOST_DEVICE RO_V1_INLINE double v1_select(bool c, double a, double b) {
  const int64_t m = -static_cast<int64_t>(c);
  return v1_bitcast<double>((v1_bitcast<int64_t>(a) & m) | (v1_bitcast<int64_t>(b) & ~m));
}

RO_HOST_DEVICE RO_V1_INLINE float v1_select(bool c, float a, float b) {
  const int32_t m = -static_cast<int32_t>(c);
  return v1_bitcast<float>((v1_bitcast<int32_t>(a) & m) | (v1_bitcast<int32_t>(b) & ~m));
}

// log(x) for finite x > 0 (normal numbers): fdlibm's e_log.c without branches.
RO_HOST_DEVICE RO_V1_INLINE double v1_log(double x) {
  const double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
  const double Lg1 = 6.666666666666735130e-01, Lg2 = 3.999999999940941908e-01,
               Lg3 = 2.857142874366239149e-01, Lg4 = 2.222219843214978396e-01,
               Lg5 = 1.818357216161805012e-01, Lg6 = 1.531383769920937332e-01,
               Lg7 = 1.479819860511658591e-01;
  const int64_t bits = v1_bitcast<int64_t>(x);
  const int64_t hx = (bits >> 32) & 0x000fffff;  // the mantissa's high 20 bits
  const int64_t i = (hx + 0x95f64) & 0x100000;   // 1 << 20 when the mantissa is >= sqrt(2)
  // m = x / 2^k in [sqrt(2)/2, sqrt(2)).
  const double m = v1_bitcast<double>((bits & 0x000fffffffffffffLL) |
                                      ((0x3ff00000LL ^ i) << 32));
  // k as a double by the 2^52 trick (AVX2 has no int64 -> double conversion).
  const int64_t kb = ((bits >> 52) & 0x7ff) + (i >> 20);
  const double dk =
      v1_bitcast<double>(kb | 0x4330000000000000LL) - 4503599627370496.0 - 1023.0;
  const double f = m - 1.0;
  const double s = f / (2.0 + f);
  const double z = s * s, w = z * z;
  const double t1 = w * (Lg2 + w * (Lg4 + w * Lg6));
  const double t2 = z * (Lg1 + w * (Lg3 + w * (Lg5 + w * Lg7)));
  const double R = t2 + t1;
  const double hfsq = 0.5 * f * f;
  const double near_sqrt2 = dk * ln2_hi - ((hfsq - (s * (hfsq + R) + dk * ln2_lo)) - f);
  const double other = dk * ln2_hi - ((s * (f - R) - dk * ln2_lo) - f);
  return v1_select((hx > 0x6147a) & (hx < 0x6b851), near_sqrt2, other);
}

// logf(x) for finite x > 0 (normal numbers): fdlibm's e_logf.c (FreeBSD's
// coefficients) without branches; its |f| < 2^-9 shortcut is not needed for accuracy.
RO_HOST_DEVICE RO_V1_INLINE float v1_log(float x) {
  const float ln2_hi = 6.9313812256e-01f, ln2_lo = 9.0580006145e-06f;
  const float Lg1 = 0.66666662693f, Lg2 = 0.40000972152f, Lg3 = 0.28498786688f,
              Lg4 = 0.24279078841f;
  const int32_t bits = v1_bitcast<int32_t>(x);
  const int32_t hx = bits & 0x007fffff;
  const int32_t i = (hx + 0x4afb0d) & 0x800000;  // 1 << 23 when the mantissa is >= sqrt(2)
  const float m = v1_bitcast<float>(hx | (i ^ 0x3f800000));  // in [sqrt(2)/2, sqrt(2))
  const float dk = static_cast<float>(((bits >> 23) & 0xff) - 127 + (i >> 23));
  const float f = m - 1.0f;
  const float s = f / (2.0f + f);
  const float z = s * s, w = z * z;
  const float R = z * (Lg1 + w * Lg3) + w * (Lg2 + w * Lg4);
  const float hfsq = 0.5f * f * f;
  const float near_sqrt2 = dk * ln2_hi - ((hfsq - (s * (hfsq + R) + dk * ln2_lo)) - f);
  const float other = dk * ln2_hi - ((s * (f - R) - dk * ln2_lo) - f);
  return v1_select((hx > 0x30a3d0) & (hx < 0x35c288), near_sqrt2, other);
}

// sin(2 pi u) and cos(2 pi u) for 0 <= u <= 1, u a multiple of 2^-24 (all uniforms
// are): q = nearest integer to 4u and f = u - q/4 in [-1/8, 1/8] are exact, then
// FreeBSD's __kernel_sin / __kernel_cos (y = 0) on x = 2 pi f and a rotation by q
// quarter turns (sign flips and a swap, as bit operations).
RO_HOST_DEVICE RO_V1_INLINE void v1_sincos_2pi(double u, double* sin_out, double* cos_out) {
  const double S1 = -1.66666666666666324348e-01, S2 = 8.33333333332248946124e-03,
               S3 = -1.98412698298579493134e-04, S4 = 2.75573137070700676789e-06,
               S5 = -2.50507602534068634195e-08, S6 = 1.58969099521155010221e-10;
  const double C1 = 4.16666666666666019037e-02, C2 = -1.38888888888741095749e-03,
               C3 = 2.48015872894767294178e-05, C4 = -2.75573143513906633035e-07,
               C5 = 2.08757232129817482790e-09, C6 = -1.13596475577881948265e-11;
  // q by the 1.5 * 2^52 rounding trick (no double -> int conversion to vectorise).
  const double t = 4.0 * u + 6755399441055744.0;
  const int64_t q = v1_bitcast<int64_t>(t);  // q in the low bits
  const double f = u - 0.25 * (t - 6755399441055744.0);
  const double x = 6.283185307179586 * f;
  const double z = x * x, w = z * z;
  const double rs = S2 + z * (S3 + z * S4) + z * w * (S5 + z * S6);
  const double sn = x + z * x * (S1 + z * rs);
  const double rc = z * (C1 + z * (C2 + z * C3)) + w * w * (C4 + z * (C5 + z * C6));
  const double hz = 0.5 * z, om = 1.0 - hz;
  const double cs = om + (((1.0 - om) - hz) + z * rc);
  // cos(x + q pi/2) = (cs, -sn, -cs, sn)[q & 3]; sin(x + q pi/2) = (sn, cs, -sn, -cs)[q & 3].
  const bool odd = (q & 1) != 0;
  const int64_t cflip = ((q + 1) & 2) << 62, sflip = (q & 2) << 62;
  *cos_out = v1_bitcast<double>(v1_bitcast<int64_t>(v1_select(odd, sn, cs)) ^ cflip);
  *sin_out = v1_bitcast<double>(v1_bitcast<int64_t>(v1_select(odd, cs, sn)) ^ sflip);
}

// The float version: polynomials in f itself (least squares on |f| <= 1/8, relative
// error 3.4e-9 for sin, 2.7e-10 for cos), so 2 pi f is never rounded.
RO_HOST_DEVICE RO_V1_INLINE void v1_sincos_2pi(float u, float* sin_out, float* cos_out) {
  const float s0 = 6.2831854820251465f, s1 = -41.3416633605957f, s2 = 81.59254455566406f,
              s3 = -75.40184020996094f;
  const float c1 = -19.739208221435547f, c2 = 64.93936920166016f, c3 = -85.44879913330078f,
              c4 = 59.423248291015625f;
  const float t = 4.0f * u + 12582912.0f;  // 1.5 * 2^23
  const int32_t q = v1_bitcast<int32_t>(t);
  const float f = u - 0.25f * (t - 12582912.0f);
  const float z = f * f;
  const float sn = f * (s0 + z * (s1 + z * (s2 + z * s3)));
  const float cs = 1.0f + z * (c1 + z * (c2 + z * (c3 + z * c4)));
  const bool odd = (q & 1) != 0;
  const int32_t cflip = ((q + 1) & 2) << 30, sflip = (q & 2) << 30;
  *cos_out = v1_bitcast<float>(v1_bitcast<int32_t>(v1_select(odd, sn, cs)) ^ cflip);
  *sin_out = v1_bitcast<float>(v1_bitcast<int32_t>(v1_select(odd, cs, sn)) ^ sflip);
}

// rng_uniform(row, p) in T (exact in float too: 24 significant bits), converted
// through int32 (the 23 bits fit): x86 before AVX-512 has no vector uint32 -> double.
template <typename T>
RO_HOST_DEVICE RO_V1_INLINE T v1_uniform(uint32_t row, uint32_t p) {
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
RO_HOST_DEVICE RO_V1_INLINE void v1_noise_pair(uint32_t row1, uint32_t row2, uint32_t p, T* n_even,
                                         T* n_odd) {
  const T u1 = v1_uniform<T>(row1, p);
  const T u2 = v1_uniform<T>(row2, p);
  T s, c;
#if defined(__CUDA_ARCH__)
  const T radius = ::sqrt(T(-2) * v1_device_log(u1));
  v1_device_sincospi(T(2) * u2, &s, &c);  // 2 u2 is exact
#else
  const T radius = ro_sqrt(T(-2) * v1_log(u1));
  v1_sincos_2pi(u2, &s, &c);
#endif
  *n_even = radius * c;
  *n_odd = radius * s;
}

// The normal of logical element j alone: its pair's cosine (j even) or sine (j odd).
template <typename T>
RO_HOST_DEVICE RO_V1_INLINE T v1_noise_normal(uint32_t row1, uint32_t row2, int64_t j) {
  T ne, no;
  v1_noise_pair<T>(row1, row2, static_cast<uint32_t>(j >> 1), &ne, &no);
  return v1_select((j & 1) != 0, no, ne);
}

}  // namespace kernels
}  // namespace robustops
