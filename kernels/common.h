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

template <typename T>
RO_HOST_DEVICE inline T ro_sqrt(T v) {
#if defined(__CUDA_ARCH__)
  return ::sqrt(v);
#else
  return std::sqrt(v);
#endif
}

}  // namespace kernels
}  // namespace robustops
