// box_hyperplane_step: the per-coordinate math of FAB's projection onto a hyperplane
// inside a box (robustops/attacks/fab.py; Croce & Hein, 2020).
//
// For one row t, w (D values) and b: the smallest step d (L-inf or L2 norm) with
// w.(t + d) = b and lo <= t + d <= hi. Oriented so the step must lower w.z by
// c = |w.t - b| (orient = +1 when w.t >= b, else -1; w_i <- orient w_i), coordinate i
// moves by -sign(w_i) min(lam s_i, cap_i): s_i = 1 (L-inf) or |w_i| (L2), the KKT form
// of both problems, cap_i its room in the box towards lower w.z. Coordinate i is live
// when |w_i| > 1e-12 and cap_i > 0 (only live coordinates move). The decrease
//   decrease(lam) = sum_i slope_i min(lam, kink_i),  slope_i = |w_i| s_i,  kink_i = cap_i / s_i
// is concave, piecewise linear and non-decreasing in lam; saturated coordinates
// (kink_i <= lam) contribute gain_i = slope_i kink_i = |w_i| cap_i. lam solves
// decrease(lam) = c: Newton's steps from 0 (lam = (c - gained) / slope left) rise to the
// root without passing it and land on it from its own linear piece; a sort of the kinks
// finds it in every case. Where the hyperplane misses the box (sum of gains < c), lam is
// +inf and every live coordinate moves to its box edge.
//
// The reference in robustops/ops/box_hyperplane_step.py (plain PyTorch; what CUDA tensors
// run when Triton is not installed) and the Triton kernel restate these formulas.
#pragma once
#include "common.h"

namespace robustops {
namespace kernels {

// Smallest |w_i| that counts as a direction (the reference's threshold).
constexpr double kBoxActiveWeight = 1e-12;
// Floor of the slope left in a Newton step (a row with nothing left to move).
constexpr double kBoxSlopeFloor = 1e-30;

// Room of coordinate i in the box towards lower w.z (w_oriented > 0: down to lo, else up
// to hi), never negative (a value already outside the box does not move).
template <typename T>
RO_HOST_DEVICE inline T box_room(T t, T w_oriented, T lo, T hi) {
  const T room = w_oriented > T(0) ? t - lo : hi - t;
  return room > T(0) ? room : T(0);
}

// Whether coordinate i has a direction (|w_i| above the reference's threshold).
template <typename T>
RO_HOST_DEVICE inline bool box_active(T abs_w) {
  return abs_w > T(kBoxActiveWeight);
}

// Whether coordinate i moves at all (a direction, and room to move in). (A select, not
// `&&` nor `&` of the two tests: GCC 12 vectorises neither of those in the CPU loops.)
template <typename T>
RO_HOST_DEVICE inline bool box_live(T abs_w, T cap) {
  return box_active(abs_w) ? cap > T(0) : false;
}

// The KKT scale s_i of a coordinate: 1 for L-inf, |w_i| for L2.
template <typename T>
RO_HOST_DEVICE inline T box_scale(T abs_w, bool l2) {
  return l2 ? abs_w : T(1);
}

// lam of one Newton step: the root of the linear piece where `gained` is the gain of the
// saturated coordinates and `slope_left` the slope of the others.
template <typename A>
RO_HOST_DEVICE inline A box_newton_lambda(A c, A gained, A slope_left) {
  return (c - gained) / (slope_left > A(kBoxSlopeFloor) ? slope_left : A(kBoxSlopeFloor));
}

// The step of an active coordinate (others move by 0): -sign(w_oriented) min(lam s, cap),
// for lam >= 0. lam = +inf gives the box edge (s > 0 for an active coordinate); a
// coordinate without room (cap 0) moves by 0.
template <typename T>
RO_HOST_DEVICE inline T box_step(T lam, T scale, T cap, T w_oriented) {
  const T move = lam * scale < cap ? lam * scale : cap;
  return w_oriented > T(0) ? -move : move;
}

}  // namespace kernels
}  // namespace robustops
