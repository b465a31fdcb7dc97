// counter_rng: the per-element math of the counter-based random numbers.
//
// Single source of truth for the hash; robustops/ops/counter_rng.py holds the
// plain-PyTorch reference (bit-identical for uniforms) and the Triton kernel
// restates it. A value depends only on (base, sample index, element):
//   base  = fmix32(key32(seed) ^ (stream + 1) * GOLDEN)        (host side)
//   row   = fmix32(fmix32(base ^ fmix32(idx_hi ^ C1)) ^ idx_lo)
//   col   = fmix32(j * GOLDEN ^ C2)
//   h     = fmix32(fmix32(row ^ col) ^ (row >> 7))
//   u     = ((h >> 9) + 0.5) * 2^-23                          in (0, 1)
#pragma once
#include <stdint.h>

#include "common.h"
#include "vector_math.h"

namespace robustops {
namespace kernels {

constexpr uint32_t kRngGolden = 0x9E3779B9u;
constexpr uint32_t kRngRowSalt = 0x68E31DA4u;
constexpr uint32_t kRngColSalt = 0x1B873593u;

// MurmurHash3's 32-bit finaliser.
RO_HOST_DEVICE inline uint32_t rng_fmix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x85EBCA6Bu;
  h ^= h >> 13;
  h *= 0xC2B2AE35u;
  h ^= h >> 16;
  return h;
}

// The 32-bit key of (seed, stream), host side: fmix32(fold32(seed) ^ (stream + 1) * GOLDEN),
// seed taken modulo 2^64 (robustops/ops/counter_rng.py's stream_base).
RO_HOST_DEVICE inline uint32_t rng_stream_base(uint64_t seed, uint32_t stream) {
  const uint32_t folded = static_cast<uint32_t>((seed ^ (seed >> 32)) & 0xFFFFFFFFu);
  return rng_fmix32(folded ^ ((stream + 1u) * kRngGolden));
}

// The per-sample part of the key: hoisted out of the per-element loop.
RO_HOST_DEVICE inline uint32_t rng_row(uint32_t base, int64_t index) {
  const uint32_t lo = static_cast<uint32_t>(static_cast<uint64_t>(index) & 0xFFFFFFFFu);
  const uint32_t hi = static_cast<uint32_t>(static_cast<uint64_t>(index) >> 32);
  return rng_fmix32(rng_fmix32(base ^ rng_fmix32(hi ^ kRngRowSalt)) ^ lo);
}

RO_HOST_DEVICE inline uint32_t rng_bits(uint32_t row, int64_t j) {
  const uint32_t col = rng_fmix32((static_cast<uint32_t>(j) * kRngGolden) ^ kRngColSalt);
  return rng_fmix32(rng_fmix32(row ^ col) ^ (row >> 7));
}

// Uniform in the open interval (0, 1): 23 random bits, centred in their bucket, so
// the largest value (1 - 2^-24) stays below 1 even after rounding to float32.
// (The 23 bits go through int32: x86 before AVX-512 has no vector uint32 -> double.)
RO_HOST_DEVICE inline double rng_uniform(uint32_t row, int64_t j) {
  return (static_cast<double>(static_cast<int32_t>(rng_bits(row, j) >> 9)) + 0.5) *
         (1.0 / 8388608.0);
}

// Standard normal by Box-Muller on two streams' uniforms.
RO_HOST_DEVICE inline double rng_normal(uint32_t row1, uint32_t row2, int64_t j) {
  const double u1 = rng_uniform(row1, j);
  const double u2 = rng_uniform(row2, j);
#if defined(__CUDA_ARCH__)
  return ::sqrt(-2.0 * ::log(u1)) * ::cos(6.283185307179586 * u2);
#else
  // The branch-free log and cosine of vector_math.h (within 1-2 ulp of libm's), so the
  // CPU loop vectorises; u2 is a multiple of 2^-24, as vm_sincos_2pi requires.
  double s, c;
  vm_sincos_2pi(u2, &s, &c);
  return std::sqrt(-2.0 * vm_log(u1)) * c;
#endif
}

}  // namespace kernels
}  // namespace robustops
