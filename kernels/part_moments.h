// part_moments: the math of the bbox / weighted-bbox part features (METHODS.md section 1).
//
// Input: part logits M (C = K + 1 channels, channel 0 = background) of one image,
// H x W pixels. Per pixel p = (h, w), with centred coordinates
//   u = w - (W - 1) / 2,   v = h - (H - 1) / 2
// (centring keeps the one-pass second moments free of cancellation):
//   S_c(p) = softmax_c M(p)                          channel softmax
//   f(p)   = sigmoid(sum_{k>=1} M_k(p) - M_0(p))     foreground weight (weighted mode)
// Per part k = 1..K, the moments (one pass over the logits):
//   A = sum_p S_k,  X = sum_p u S_k,  XX = sum_p u^2 S_k,  Y = sum_p v S_k,
//   YY = sum_p v^2 S_k,  Q = sum_p M_k f;   per image F = sum_p f.
// Features (pixel units first; e = kPmMassEps, At = A + e, mx = (W - 1) / 2):
//   d_x   = (X - mx e) / At                   so c_x = d_x + mx = sum_p w S_k / At
//   var_x = (XX - 2 d_x X + d_x^2 A) / At     = sum_p (w - c_x)^2 S_k / At
//   s_x   = sqrt(max(var_x, 0) + kPmVarEps)
//   (y likewise with v, H), and, normalised as METHODS.md:
//   [mass, c_x / W * 2 - 1, c_y / H * 2 - 1, s_x / W * 2, s_y / H * 2]
//   mass = A / (H W) (bbox) or the class score Q / max(F, kPmFgEps) (weighted bbox).
// The epsilons keep absent parts (A -> 0) and one-pixel parts (var -> 0) finite and
// differentiable; they change present parts' features by < 1e-6.
//
// Backward: with g = dL/dfeatures (5 per part), every pixel's gradient wrt S_k is a
// quadratic in (u, v),  dL/dS_k(p) = a + b u + c u^2 + d v + e v^2  (PmCoeffs), and
// wrt f it is  phi(p) = dF + sum_k dQ_k M_k(p).  Then
//   dot(p)    = sum_{k>=1} S_k g_k(p)
//   dL/dM_0   = -S_0 dot - phi f (1 - f)
//   dL/dM_k   = S_k (g_k - dot) + dQ_k f + phi f (1 - f)      (k >= 1)
// (the f terms only in weighted mode).
//
// Single source of truth: csrc/cpu/part_moments.cpp and csrc/cuda/part_moments.cu
// call these functions; robustops/triton/part_moments.py and the reference in
// robustops/ops/part_moments.py restate them and are tested against them.
#pragma once
#include <stdint.h>

#include "common.h"

namespace robustops {
namespace kernels {

constexpr double kPmMassEps = 1e-6;  // added to each part's mass before dividing by it
constexpr double kPmVarEps = 1e-6;   // added to the variance (pixels^2) under the sqrt
constexpr double kPmFgEps = 1e-6;    // lower clamp of the foreground weight sum F
constexpr int kPmMoments = 6;        // A, X, XX, Y, YY, Q per part
constexpr int kPmFeatures = 5;       // mass or score, c_x, c_y, s_x, s_y per part

// max(a, b) with a NaN in a kept (as torch's clamp_min in the reference): a NaN variance or
// foreground sum must give NaN features, not the clamp's bound.
template <typename T>
RO_HOST_DEVICE inline T pm_max(T a, T b) {
  return (a > b || a != a) ? a : b;
}

// Foreground weight from t = sum_{k>=1} M_k - M_0.
template <typename T>
RO_HOST_DEVICE inline T pm_sigmoid(T t) {
  return T(1) / (T(1) + ro_exp(-t));
}

// Centred coordinate of index i on an axis of n pixels.
template <typename T>
RO_HOST_DEVICE inline T pm_centred(int64_t i, int64_t n) {
  return static_cast<T>(i) - T(0.5) * static_cast<T>(n - 1);
}

// One axis of the part statistics: the centre offset d (c = d + mid) and variance.
struct PmAxis {
  double d, var, sigma;
};

RO_HOST_DEVICE inline PmAxis pm_axis(double a, double x, double xx, double mid) {
  const double at = a + kPmMassEps;
  PmAxis r;
  r.d = (x - mid * kPmMassEps) / at;
  r.var = (xx - 2.0 * r.d * x + r.d * r.d * a) / at;
  r.sigma = ro_sqrt(pm_max(r.var, 0.0) + kPmVarEps);
  return r;
}

// The 5 normalised features of one part from its 6 moments m (A, X, XX, Y, YY, Q) and
// the image's foreground sum fsum (used only when weighted).
RO_HOST_DEVICE inline void pm_features(const double* m, double fsum, int64_t h, int64_t w,
                                       bool weighted, double* out) {
  const double mid_x = 0.5 * static_cast<double>(w - 1);
  const double mid_y = 0.5 * static_cast<double>(h - 1);
  const PmAxis ax = pm_axis(m[0], m[1], m[2], mid_x);
  const PmAxis ay = pm_axis(m[0], m[3], m[4], mid_y);
  const double fw = static_cast<double>(w), fh = static_cast<double>(h);
  out[0] = weighted ? m[5] / pm_max(fsum, kPmFgEps) : m[0] / (fh * fw);
  out[1] = (ax.d + mid_x) / fw * 2.0 - 1.0;
  out[2] = (ay.d + mid_y) / fh * 2.0 - 1.0;
  out[3] = ax.sigma / fw * 2.0;
  out[4] = ay.sigma / fh * 2.0;
}

// Per-part coefficients of the backward (see the header comment).
struct PmCoeffs {
  double a, b, c, d, e;  // dL/dS_k = a + b u + c u^2 + d v + e v^2
  double dq;             // dL/dQ_k
  double dfsum;          // this part's share of dL/dF
};

// m: the part's 6 moments; fsum: the image's F; g: dL/d(5 features) of the part.
RO_HOST_DEVICE inline PmCoeffs pm_coeffs(const double* m, double fsum, const double* g,
                                         int64_t h, int64_t w, bool weighted) {
  const double fw = static_cast<double>(w), fh = static_cast<double>(h);
  const double a = m[0], at = a + kPmMassEps;
  PmCoeffs r;
  r.a = weighted ? 0.0 : g[0] / (fh * fw);
  // One axis: moments (x, xx) with centre gradient gc and sigma gradient gs (pixel units).
  const double mids[2] = {0.5 * (fw - 1.0), 0.5 * (fh - 1.0)};
  const double xs[2] = {m[1], m[3]}, xxs[2] = {m[2], m[4]};
  const double gcs[2] = {g[1] * 2.0 / fw, g[2] * 2.0 / fh};
  const double gss[2] = {g[3] * 2.0 / fw, g[4] * 2.0 / fh};
  double dxs[2], dxxs[2];
  for (int i = 0; i < 2; ++i) {
    const PmAxis ax = pm_axis(a, xs[i], xxs[i], mids[i]);
    // d sigma / d var = 1 / (2 sigma) where var > 0; the clamp passes no gradient.
    const double gvar = ax.var > 0.0 ? gss[i] / (2.0 * ax.sigma) : 0.0;
    // dL/dd through the centre and through var (var depends on d explicitly).
    const double gd = gcs[i] + gvar * 2.0 * (ax.d * a - xs[i]) / at;
    dxxs[i] = gvar / at;
    dxs[i] = (gd - 2.0 * gvar * ax.d) / at;
    r.a += (gvar * (ax.d * ax.d - ax.var) - gd * ax.d) / at;
  }
  r.b = dxs[0];
  r.c = dxxs[0];
  r.d = dxs[1];
  r.e = dxxs[1];
  if (weighted) {
    const double fc = pm_max(fsum, kPmFgEps);
    r.dq = g[0] / fc;
    r.dfsum = fsum > kPmFgEps ? -g[0] * m[5] / (fc * fc) : 0.0;
  } else {
    r.dq = 0.0;
    r.dfsum = 0.0;
  }
  return r;
}

// dL/dS_k at a pixel from the part's coefficients, with the row term
// row = a + d v + e v^2 hoisted out of the loop over a row.
template <typename T>
RO_HOST_DEVICE inline T pm_row_term(const PmCoeffs& k, T v) {
  return static_cast<T>(k.a) + v * (static_cast<T>(k.d) + static_cast<T>(k.e) * v);
}

template <typename T>
RO_HOST_DEVICE inline T pm_grad_s(T row, T b, T c, T u) {
  return row + u * (b + c * u);
}

}  // namespace kernels
}  // namespace robustops
