// Host entry points of the counter_rng op (bound in csrc/module.cpp).
// out: (B, N) contiguous float32/float64 on index's device; index: (B,) int64
// contiguous. base2 is used by the normal draw only.
#pragma once
#include <ATen/core/Tensor.h>
#include <stdint.h>

namespace robustops {

void counter_rng_cpu(at::Tensor& out, const at::Tensor& index, uint32_t base1, uint32_t base2,
                     bool normal);

#ifdef ROBUSTOPS_WITH_CUDA
void counter_rng_cuda(at::Tensor& out, const at::Tensor& index, uint32_t base1, uint32_t base2,
                      bool normal);
#endif

}  // namespace robustops
