// vector_math: libm-free, branch-free elementary functions for the CPU loops.
//
// GCC vectorises a `#pragma omp simd` loop only when every call in it is inlined;
// glibc's exp/log/cos are calls, so the loops that need them use these restatements
// of fdlibm (FreeBSD msun) instead: e_log.c / e_logf.c (vm_log), e_exp.c (vm_exp) and
// __kernel_sin / __kernel_cos behind an exact quarter-turn reduction (vm_sincos_2pi,
// vm_cos). Selects are integer blends: with -ftrapping-math GCC will not if-convert a
// ?: whose arms it would have to compute speculatively. Used by v1_response's noise,
// counter_rng's normals and gabor_bank (CUDA keeps its own libm).
#pragma once
#include <stdint.h>
#include <string.h>

#include "common.h"

namespace robustops {
namespace kernels {

template <typename To, typename From>
RO_HOST_DEVICE inline To vm_bitcast(From v) {
  To t;
  memcpy(&t, &v, sizeof(t));
  return t;
}

// c ? a : b without a branch.
RO_HOST_DEVICE inline double vm_select(bool c, double a, double b) {
  const int64_t m = -static_cast<int64_t>(c);
  return vm_bitcast<double>((vm_bitcast<int64_t>(a) & m) | (vm_bitcast<int64_t>(b) & ~m));
}

RO_HOST_DEVICE inline float vm_select(bool c, float a, float b) {
  const int32_t m = -static_cast<int32_t>(c);
  return vm_bitcast<float>((vm_bitcast<int32_t>(a) & m) | (vm_bitcast<int32_t>(b) & ~m));
}

// log(x) for finite x > 0 (normal numbers): fdlibm's e_log.c without branches.
RO_HOST_DEVICE inline double vm_log(double x) {
  const double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
  const double Lg1 = 6.666666666666735130e-01, Lg2 = 3.999999999940941908e-01,
               Lg3 = 2.857142874366239149e-01, Lg4 = 2.222219843214978396e-01,
               Lg5 = 1.818357216161805012e-01, Lg6 = 1.531383769920937332e-01,
               Lg7 = 1.479819860511658591e-01;
  const int64_t bits = vm_bitcast<int64_t>(x);
  const int64_t hx = (bits >> 32) & 0x000fffff;  // the mantissa's high 20 bits
  const int64_t i = (hx + 0x95f64) & 0x100000;   // 1 << 20 when the mantissa is >= sqrt(2)
  // m = x / 2^k in [sqrt(2)/2, sqrt(2)).
  const double m = vm_bitcast<double>((bits & 0x000fffffffffffffLL) |
                                      ((0x3ff00000LL ^ i) << 32));
  // k as a double by the 2^52 trick (AVX2 has no int64 -> double conversion).
  const int64_t kb = ((bits >> 52) & 0x7ff) + (i >> 20);
  const double dk =
      vm_bitcast<double>(kb | 0x4330000000000000LL) - 4503599627370496.0 - 1023.0;
  const double f = m - 1.0;
  const double s = f / (2.0 + f);
  const double z = s * s, w = z * z;
  const double t1 = w * (Lg2 + w * (Lg4 + w * Lg6));
  const double t2 = z * (Lg1 + w * (Lg3 + w * (Lg5 + w * Lg7)));
  const double R = t2 + t1;
  const double hfsq = 0.5 * f * f;
  const double near_sqrt2 = dk * ln2_hi - ((hfsq - (s * (hfsq + R) + dk * ln2_lo)) - f);
  const double other = dk * ln2_hi - ((s * (f - R) - dk * ln2_lo) - f);
  return vm_select((hx > 0x6147a) & (hx < 0x6b851), near_sqrt2, other);
}

// logf(x) for finite x > 0 (normal numbers): fdlibm's e_logf.c (FreeBSD's
// coefficients) without branches; its |f| < 2^-9 shortcut is not needed for accuracy.
RO_HOST_DEVICE inline float vm_log(float x) {
  const float ln2_hi = 6.9313812256e-01f, ln2_lo = 9.0580006145e-06f;
  const float Lg1 = 0.66666662693f, Lg2 = 0.40000972152f, Lg3 = 0.28498786688f,
              Lg4 = 0.24279078841f;
  const int32_t bits = vm_bitcast<int32_t>(x);
  const int32_t hx = bits & 0x007fffff;
  const int32_t i = (hx + 0x4afb0d) & 0x800000;  // 1 << 23 when the mantissa is >= sqrt(2)
  const float m = vm_bitcast<float>(hx | (i ^ 0x3f800000));  // in [sqrt(2)/2, sqrt(2))
  const float dk = static_cast<float>(((bits >> 23) & 0xff) - 127 + (i >> 23));
  const float f = m - 1.0f;
  const float s = f / (2.0f + f);
  const float z = s * s, w = z * z;
  const float R = z * (Lg1 + w * Lg3) + w * (Lg2 + w * Lg4);
  const float hfsq = 0.5f * f * f;
  const float near_sqrt2 = dk * ln2_hi - ((hfsq - (s * (hfsq + R) + dk * ln2_lo)) - f);
  const float other = dk * ln2_hi - ((s * (f - R) - dk * ln2_lo) - f);
  return vm_select((hx > 0x30a3d0) & (hx < 0x35c288), near_sqrt2, other);
}

// sin(2 pi u) and cos(2 pi u) for 0 <= u <= 1, u a multiple of 2^-24 (all uniforms
// are): q = nearest integer to 4u and f = u - q/4 in [-1/8, 1/8] are exact, then
// FreeBSD's __kernel_sin / __kernel_cos (y = 0) on x = 2 pi f and a rotation by q
// quarter turns (sign flips and a swap, as bit operations).
RO_HOST_DEVICE inline void vm_sincos_2pi(double u, double* sin_out, double* cos_out) {
  const double S1 = -1.66666666666666324348e-01, S2 = 8.33333333332248946124e-03,
               S3 = -1.98412698298579493134e-04, S4 = 2.75573137070700676789e-06,
               S5 = -2.50507602534068634195e-08, S6 = 1.58969099521155010221e-10;
  const double C1 = 4.16666666666666019037e-02, C2 = -1.38888888888741095749e-03,
               C3 = 2.48015872894767294178e-05, C4 = -2.75573143513906633035e-07,
               C5 = 2.08757232129817482790e-09, C6 = -1.13596475577881948265e-11;
  // q by the 1.5 * 2^52 rounding trick (no double -> int conversion to vectorise).
  const double t = 4.0 * u + 6755399441055744.0;
  const int64_t q = vm_bitcast<int64_t>(t);  // q in the low bits
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
  *cos_out = vm_bitcast<double>(vm_bitcast<int64_t>(vm_select(odd, sn, cs)) ^ cflip);
  *sin_out = vm_bitcast<double>(vm_bitcast<int64_t>(vm_select(odd, cs, sn)) ^ sflip);
}

// The float version: polynomials in f itself (least squares on |f| <= 1/8, relative
// error 3.4e-9 for sin, 2.7e-10 for cos), so 2 pi f is never rounded.
RO_HOST_DEVICE inline void vm_sincos_2pi(float u, float* sin_out, float* cos_out) {
  const float s0 = 6.2831854820251465f, s1 = -41.3416633605957f, s2 = 81.59254455566406f,
              s3 = -75.40184020996094f;
  const float c1 = -19.739208221435547f, c2 = 64.93936920166016f, c3 = -85.44879913330078f,
              c4 = 59.423248291015625f;
  const float t = 4.0f * u + 12582912.0f;  // 1.5 * 2^23
  const int32_t q = vm_bitcast<int32_t>(t);
  const float f = u - 0.25f * (t - 12582912.0f);
  const float z = f * f;
  const float sn = f * (s0 + z * (s1 + z * (s2 + z * s3)));
  const float cs = 1.0f + z * (c1 + z * (c2 + z * (c3 + z * c4)));
  const bool odd = (q & 1) != 0;
  const int32_t cflip = ((q + 1) & 2) << 30, sflip = (q & 2) << 30;
  *cos_out = vm_bitcast<float>(vm_bitcast<int32_t>(vm_select(odd, sn, cs)) ^ cflip);
  *sin_out = vm_bitcast<float>(vm_bitcast<int32_t>(vm_select(odd, cs, sn)) ^ sflip);
}

// exp(x) for x <= 709 (the Gabor envelope's argument is <= 0): fdlibm's e_exp.c
// without branches, k = round(x / ln 2) by the 1.5 * 2^52 trick and 2^k built in the
// exponent bits. Below -708 (where 2^k would be subnormal) it returns 0: the exact
// value is below 3e-308, under every tolerance the callers use.
RO_HOST_DEVICE inline double vm_exp(double x) {
  const double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10,
               inv_ln2 = 1.44269504088896338700e+00;
  const double P1 = 1.66666666666666019037e-01, P2 = -2.77777777770155933842e-03,
               P3 = 6.61375632143793436117e-05, P4 = -1.65339022054652515390e-06,
               P5 = 4.13813679705723846039e-08;
  const double xc = x < -708.0 ? -708.0 : x;
  const double t = xc * inv_ln2 + 6755399441055744.0;
  const double dk = t - 6755399441055744.0;
  const int64_t k = vm_bitcast<int64_t>(t) - vm_bitcast<int64_t>(6755399441055744.0);
  const double hi = xc - dk * ln2_hi, lo = dk * ln2_lo;
  const double r = hi - lo;
  const double z = r * r;
  const double c = r - z * (P1 + z * (P2 + z * (P3 + z * (P4 + z * P5))));
  const double y = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi);
  const double scale = vm_bitcast<double>((k + 1023) << 52);
  return vm_select(x < -708.0, 0.0, y * scale);
}

// cos(x) for moderate |x| (the Gabor carrier, |x| < ~1e3): x / (2 pi) reduced to the
// nearest turn, then vm_sincos_2pi. The reduction's rounding (relative 1e-16 of
// x / 2 pi) bounds the absolute error by ~1e-15 |x| / 2 pi.
RO_HOST_DEVICE inline double vm_cos(double x) {
  const double t = x * 0.15915494309189533577;
  const double n = (t + 6755399441055744.0) - 6755399441055744.0;
  double s, c;
  vm_sincos_2pi(t - n, &s, &c);
  return c;
}

}  // namespace kernels
}  // namespace robustops
