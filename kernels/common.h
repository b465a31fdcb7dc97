// Shared macros for the header-only per-element math in kernels/<op>.h.
// The same header compiles as host C++ (csrc/cpu) and as CUDA (csrc/cuda).
#pragma once

// On the host every per-element function is forced inline: the CPU loops that call
// them are target_clones'd and `#pragma omp simd`, and one call left out of line (GCC
// declined rng_bits and v1_energy there, calling them through the PLT) makes the whole
// loop scalar: counter_rng and v1_response's noise ran 10 ns per element instead of ~1.
#if defined(__CUDACC__) || defined(__HIPCC__)
#define RO_HOST_DEVICE __host__ __device__
#elif defined(__GNUC__) || defined(__clang__)
#define RO_HOST_DEVICE __attribute__((always_inline))
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
