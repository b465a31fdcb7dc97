// v1_response: the per-element math of the fused VOneNet V1 epilogue.
//
//   simple  (c <  S): x = k * relu(q0)
//   complex (c >= S): x = k * sqrt(q0^2 + q1^2) / sqrt(2)
//   noise on:         r = s x + l;  r += n * sqrt(relu(r) + 1e-4);  y = relu((r - l) / s)
//   noise off:        y = x
//
// n is a standard normal from kernels/counter_rng.h keyed by (seed, global sample
// index, logical NCHW offset c*H*W + h*W + w), so it does not depend on layout or
// batch split. Single source of truth for the formula: the CPU loops
// (csrc/cpu/v1_response.cpp) and CUDA kernels (csrc/cuda/v1_response.cu) call these
// functions; the Triton kernel (robustops/triton/v1_response.py) and the reference
// (robustops/ops/v1_response.py) restate them in the same operation order.
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

template <typename T>
RO_HOST_DEVICE inline T v1_max0(T v) { return v > T(0) ? v : T(0); }

// Simple cell: k * relu(a).
template <typename T>
RO_HOST_DEVICE inline T v1_simple(T a, T k) {
  return k * v1_max0(a);
}

// Complex cell: the quadrature pair's energy, k * sqrt(a^2 + b^2) * (1/sqrt 2).
template <typename T>
RO_HOST_DEVICE inline T v1_complex(T a, T b, T k) {
  return k * ro_sqrt(a * a + b * b) * T(kV1InvSqrt2);
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
  const T e = ro_sqrt(a * a + b * b);
  const T safe = e > T(0) ? e : T(1);
  const T inv = e > T(0) ? T(1) / safe : T(0);
  return g * k * T(kV1InvSqrt2) * inv;
}

// ----------------------------------------------------------------------------- noise normals
//
// The normals are rng_normal's (kernels/counter_rng.h): Box-Muller on the uniforms
// u1 = rng_uniform(row1, j), u2 = rng_uniform(row2, j),
//     n = sqrt(-2 log u1) * cos(6.283185307179586 u2).
// CUDA calls rng_normal itself. The CPU splits it so it vectorises: v1_bm_radius2 and
// v1_bm_cos below are libm-free, branch-free restatements of -2 log(u1) and
// cos(2 pi u2) (fdlibm's e_log.c and k_cos/k_sin with its pi/2 reduction; checked on
// all 2^23 possible uniforms: within 1 ulp of glibc, and the float32-rounded normals
// equal rng_normal's on every one), and the consumer loop takes sqrt(radius2) * cos.
// Selects on doubles are integer blends: with -ftrapping-math (the default) GCC will
// not if-convert a ?: whose arms it would have to compute speculatively.

template <typename To, typename From>
RO_HOST_DEVICE inline To v1_bitcast(From v) {
  To t;
  memcpy(&t, &v, sizeof(t));
  return t;
}

// c ? a : b without a branch.
RO_HOST_DEVICE inline double v1_select(bool c, double a, double b) {
  const int64_t m = -static_cast<int64_t>(c);
  return v1_bitcast<double>((v1_bitcast<int64_t>(a) & m) | (v1_bitcast<int64_t>(b) & ~m));
}

// log(x) for finite x > 0 (normal numbers): fdlibm's e_log.c without branches.
RO_HOST_DEVICE inline double v1_log(double x) {
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

// cos(x) for 0 <= x < 2 pi + pi/4: fdlibm's reduction by pi/2 (quadrant n <= 4, so
// pio2_1 + pio2_1t suffice) and its __kernel_cos / __kernel_sin, without branches.
RO_HOST_DEVICE inline double v1_cos(double x) {
  const double invpio2 = 6.36619772367581382433e-01, pio2_1 = 1.57079632673412561417e+00,
               pio2_1t = 6.07710050650619224932e-11;
  const double S1 = -1.66666666666666324348e-01, S2 = 8.33333333332248946124e-03,
               S3 = -1.98412698298579493134e-04, S4 = 2.75573137070700676789e-06,
               S5 = -2.50507602534068634195e-08, S6 = 1.58969099521155010221e-10;
  const double C1 = 4.16666666666666019037e-02, C2 = -1.38888888888741095749e-03,
               C3 = 2.48015872894767294178e-05, C4 = -2.75573143513906633035e-07,
               C5 = 2.08757232129817482790e-09, C6 = -1.13596475577881948265e-11;
  // The nearest quadrant n by the 1.5 * 2^52 rounding trick (GCC does not vectorise
  // double -> int conversions here); q holds n's low bits.
  const double t = x * invpio2 + 6755399441055744.0;
  const double n = t - 6755399441055744.0;
  const int64_t q = v1_bitcast<int64_t>(t);
  const double r = x - n * pio2_1;  // exact: n * pio2_1 has <= 36 bits and is close to x
  const double w = n * pio2_1t;
  const double y0 = r - w;
  const double y1 = (r - y0) - w;
  const double z = y0 * y0, v = z * y0;
  const double rs = S2 + z * (S3 + z * (S4 + z * (S5 + z * S6)));
  const double sn = y0 - ((z * (0.5 * y1 - v * rs) - y1) - v * S1);  // __kernel_sin(y0, y1, 1)
  // __kernel_cos(y0, y1): qx = 0 below 0.3, 0.28125 above 0.78125, else |y0|/4 truncated.
  const double rc = z * (C1 + z * (C2 + z * (C3 + z * (C4 + z * (C5 + z * C6)))));
  const double ay = v1_bitcast<double>(v1_bitcast<int64_t>(y0) & 0x7fffffffffffffffLL);
  const double qx_mid =
      v1_bitcast<double>((v1_bitcast<int64_t>(ay) - 0x0020000000000000LL) & ~0xffffffffLL);
  const double qx = v1_select(ay < 0.29999995231628418, 0.0,
                              v1_select(ay > 0.78125, 0.28125, qx_mid));
  const double cs = (1.0 - qx) - ((0.5 * z - qx) - (z * rc - y0 * y1));
  // cos(y + n pi/2): n = 0, 4 -> cos y; 1 -> -sin y; 2 -> -cos y; 3 -> sin y.
  const double val = v1_select((q & 1) != 0, sn, cs);
  return v1_select(((q + 1) & 2) != 0, -val, val);
}

// rng_uniform(row, j), converted through int32 (the 23 bits fit): x86 before
// AVX-512 has no vector uint32 -> double conversion.
RO_HOST_DEVICE inline double v1_uniform(uint32_t row, int64_t j) {
  const int32_t k = static_cast<int32_t>(rng_bits(row, j) >> 9);
  return (static_cast<double>(k) + 0.5) * (1.0 / 8388608.0);
}

// Box-Muller's squared radius -2 log(u1).
RO_HOST_DEVICE inline double v1_bm_radius2(uint32_t row1, int64_t j) {
  return -2.0 * v1_log(v1_uniform(row1, j));
}

// Box-Muller's cos(2 pi u2); the normal is ro_sqrt(radius2) * cos, which is
// rng_normal(row1, row2, j) to the last bit.
RO_HOST_DEVICE inline double v1_bm_cos(uint32_t row2, int64_t j) {
  return v1_cos(6.283185307179586 * v1_uniform(row2, j));
}

}  // namespace kernels
}  // namespace robustops
