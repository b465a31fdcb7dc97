// gabor_bank: the per-element math of a bank of Gabor filters and its gradient.
//
// Filter i is a (k, k) grid; at row offset x = r - k/2 and column offset
// y = c - k/2 (VOneNet's torch.meshgrid 'ij' order: x runs down the rows):
//   u = x cos(theta) + y sin(theta)            (rotated x)
//   v = -x sin(theta) + y cos(theta)           (rotated y)
//   E = exp(-(u^2 / sx^2 + v^2 / sy^2) / 2),   N = 1 / (2 pi sx sy)
//   g = E N cos(2 pi f u + phase)
// Partial derivatives (du/dtheta = v, dv/dtheta = -u):
//   dg/df     = -E N sin(.) 2 pi u
//   dg/dsx    = g (u^2 / sx^3 - 1 / sx)
//   dg/dsy    = g (v^2 / sy^3 - 1 / sy)
//   dg/dtheta = -g u v (1 / sx^2 - 1 / sy^2) - E N sin(.) 2 pi f v
//   dg/dphase = -E N sin(.)
//
// Single source of truth for the formula: csrc/cpu/gabor_bank.cpp and
// csrc/cuda/gabor_bank.cu call these functions; robustops/triton/gabor_bank.py
// and the reference in robustops/ops/gabor_bank.py restate them and are tested
// against them. All backends compute in double (T = double) and round once:
// the cosine's argument reaches ~50 rad for fine filters, where float32 loses
// ~1e-5 relative, and a bank is small (512 x 25 x 25), so the cost is nil.
#pragma once
#include <stdint.h>

#include "common.h"
#include "vector_math.h"

namespace robustops {
namespace kernels {

constexpr double kGaborTwoPi = 6.283185307179586;

// The per-filter constants, hoisted out of the k*k loop.
template <typename T>
struct GaborCoeffs {
  T cos_t, sin_t;    // cos(theta), sin(theta)
  T inv_sx, inv_sy;  // 1 / sigma
  T inv_sx2, inv_sy2;
  T norm;            // 1 / (2 pi sx sy)
  T two_pi_f;        // 2 pi f
  T phase;
};

template <typename T>
RO_HOST_DEVICE inline GaborCoeffs<T> gabor_coeffs(T f, T sx, T sy, T theta, T phase) {
  GaborCoeffs<T> c;
  c.cos_t = ro_cos(theta);
  c.sin_t = ro_sin(theta);
  c.inv_sx = T(1) / sx;
  c.inv_sy = T(1) / sy;
  c.inv_sx2 = c.inv_sx * c.inv_sx;
  c.inv_sy2 = c.inv_sy * c.inv_sy;
  c.norm = T(1) / (T(kGaborTwoPi) * sx * sy);
  c.two_pi_f = T(kGaborTwoPi) * f;
  c.phase = phase;
  return c;
}

// Grid offsets of element (r, col) of a k x k filter, w = k / 2.
template <typename T>
RO_HOST_DEVICE inline T gabor_offset(int64_t index, int64_t w) {
  return static_cast<T>(index - w);
}

// The filter value at offsets (x, y). On the CPU, in double, exp and cos are the
// branch-free vm_exp / vm_cos (kernels/vector_math.h) so a filter's row vectorises.
template <typename T>
RO_HOST_DEVICE inline T gabor_element(const GaborCoeffs<T>& c, T x, T y) {
  const T u = x * c.cos_t + y * c.sin_t;
  const T v = y * c.cos_t - x * c.sin_t;
  const T arg = T(-0.5) * (u * u * c.inv_sx2 + v * v * c.inv_sy2);
  const T carrier = c.two_pi_f * u + c.phase;
#if !defined(__CUDA_ARCH__)
  if constexpr (sizeof(T) == sizeof(double)) return vm_exp(arg) * c.norm * vm_cos(carrier);
#endif
  return ro_exp(arg) * c.norm * ro_cos(carrier);
}

// go * (dg/df, dg/dsx, dg/dsy, dg/dtheta, dg/dphase) at offsets (x, y), added to acc.
template <typename T>
struct GaborGrad {
  T f, sx, sy, theta, phase;
};

template <typename T>
RO_HOST_DEVICE inline void gabor_grad_accumulate(const GaborCoeffs<T>& c, T x, T y, T go,
                                                 GaborGrad<T>& acc) {
  const T u = x * c.cos_t + y * c.sin_t;
  const T v = y * c.cos_t - x * c.sin_t;
  const T en = ro_exp(T(-0.5) * (u * u * c.inv_sx2 + v * v * c.inv_sy2)) * c.norm;
  const T arg = c.two_pi_f * u + c.phase;
  const T g = en * ro_cos(arg);
  const T d_phase = -en * ro_sin(arg);  // dg/dphase; the other sine terms reuse it
  acc.f += go * d_phase * T(kGaborTwoPi) * u;
  acc.sx += go * g * (u * u * c.inv_sx2 - T(1)) * c.inv_sx;
  acc.sy += go * g * (v * v * c.inv_sy2 - T(1)) * c.inv_sy;
  acc.theta += go * (d_phase * c.two_pi_f * v - g * u * v * (c.inv_sx2 - c.inv_sy2));
  acc.phase += go * d_phase;
}

}  // namespace kernels
}  // namespace robustops
