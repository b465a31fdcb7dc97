// Shared macros for the header-only per-element math in kernels/<op>.h.
// The same header compiles as host C++ (csrc/cpu) and as CUDA (csrc/cuda).
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define RO_HOST_DEVICE __host__ __device__
#else
#define RO_HOST_DEVICE
#endif

#include <cmath>

namespace robustops {
namespace kernels {

// The library functions, on the host (std::) and on the device (::), for every op.
#if defined(__CUDA_ARCH__)
#define RO_MATH_1(name)                                      \
  template <typename T>                                      \
  RO_HOST_DEVICE inline T ro_##name(T v) { return ::name(v); }
#else
#define RO_MATH_1(name)                                      \
  template <typename T>                                      \
  RO_HOST_DEVICE inline T ro_##name(T v) { return std::name(v); }
#endif
RO_MATH_1(sqrt)
RO_MATH_1(exp)
RO_MATH_1(log)
RO_MATH_1(cos)
RO_MATH_1(sin)
#undef RO_MATH_1

// |v| without a call, so loops stay branch-free and vectorise.
template <typename T>
RO_HOST_DEVICE inline T ro_abs(T v) {
  return v < T(0) ? -v : v;
}

}  // namespace kernels
}  // namespace robustops
