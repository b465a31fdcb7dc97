// Host entry points of the counter_rng op: the device kernels (csrc/cpu, csrc/cuda) and
// what csrc/ops/counter_rng.cpp shares with them (checks).
//
// Kernel contract (established by counter_rng_op, not checked by the kernels):
//   out: (B, N) contiguous float32/float64 on index's device; index: (B,) int64
//   contiguous. base2 is used by the normal draw only.
#pragma once
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <stdint.h>

namespace robustops {

void counter_rng_cpu(at::Tensor& out, const at::Tensor& index, uint32_t base1, uint32_t base2,
                     bool normal);

// A device kernel (counter_rng_cpu / counter_rng_cuda).
using CounterRngKernel = void (*)(at::Tensor& out, const at::Tensor& index, uint32_t base1,
                                  uint32_t base2, bool normal);

// Every argument check of the op, with the messages of robustops/ops/counter_rng.py.
void check_counter_rng_args(const at::Tensor& index, int64_t numel, at::ScalarType dtype);

// The op's kernel for one dispatch key, over that device's `kernel`.
template <CounterRngKernel kernel>
at::Tensor counter_rng_op(const at::Tensor& index, int64_t numel, int64_t base1, int64_t base2,
                          bool normal, at::ScalarType dtype) {
  check_counter_rng_args(index, numel, dtype);
  at::Tensor out = at::empty({index.size(0), numel}, index.options().dtype(dtype));
  kernel(out, index.contiguous(), static_cast<uint32_t>(base1), static_cast<uint32_t>(base2),
         normal);
  return out;
}

#ifdef ROBUSTOPS_WITH_CUDA
void counter_rng_cuda(at::Tensor& out, const at::Tensor& index, uint32_t base1, uint32_t base2,
                      bool normal);
#endif

}  // namespace robustops
