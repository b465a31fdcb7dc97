// CPU kernel of counter_rng: at::parallel_for over samples, the hash of kernels/counter_rng.h;
// registered as the op's CPU kernel (schema and checks: csrc/ops/counter_rng.cpp).
#include "counter_rng.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <kernels/counter_rng.h>

#include "cpu/target_clones.h"

namespace robustops {
namespace {

using namespace kernels;

// One sample's row of n draws; vectorised (every call in the loop is inlined).
template <typename scalar_t>
RO_CPU_CLONES void uniform_row(scalar_t* __restrict__ o, int64_t n, uint32_t row) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) o[j] = static_cast<scalar_t>(rng_uniform(row, j));
}

template <typename scalar_t>
RO_CPU_CLONES void normal_row(scalar_t* __restrict__ o, int64_t n, uint32_t row1, uint32_t row2) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) o[j] = static_cast<scalar_t>(rng_normal(row1, row2, j));
}

}  // namespace

void counter_rng_cpu(at::Tensor& out, const at::Tensor& index, uint32_t base1, uint32_t base2,
                     bool normal) {
  using namespace kernels;
  const int64_t b = out.size(0);
  const int64_t n = out.numel() / std::max<int64_t>(b, 1);
  if (out.numel() == 0) return;
  const int64_t* idx = index.const_data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "counter_rng_cpu", [&] {
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(n, 1));
    at::parallel_for(0, b, grain, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const uint32_t row1 = rng_row(base1, idx[r]);
        scalar_t* orow = o + r * n;
        if (normal) {
          normal_row(orow, n, row1, rng_row(base2, idx[r]));
        } else {
          uniform_row(orow, n, row1);
        }
      }
    });
  });
}

TORCH_LIBRARY_IMPL(robustops, CPU, m) {
  m.impl("counter_rng", TORCH_FN(counter_rng_op<&counter_rng_cpu>));
}

}  // namespace robustops
