// CUDA kernel of counter_rng: one thread per element, the hash of kernels/counter_rng.h.
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <kernels/counter_rng.h>

#include "counter_rng.h"

#include <torch/library.h>

namespace robustops {
namespace {

template <typename scalar_t>
__global__ void counter_rng_kernel(scalar_t* out, const int64_t* index, int64_t total, int64_t n,
                                   uint32_t base1, uint32_t base2, bool normal) {
  using namespace kernels;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    const int64_t r = i / n, j = i - r * n;
    const uint32_t row1 = rng_row(base1, index[r]);
    out[i] = normal ? static_cast<scalar_t>(rng_normal(row1, rng_row(base2, index[r]), j))
                    : static_cast<scalar_t>(rng_uniform(row1, j));
  }
}

}  // namespace

void counter_rng_cuda(at::Tensor& out, const at::Tensor& index, uint32_t base1, uint32_t base2,
                      bool normal) {
  const int64_t total = out.numel();
  if (total == 0) return;
  const int64_t n = total / out.size(0);
  c10::cuda::CUDAGuard guard(out.device());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(out.device().index());
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((total + threads - 1) / threads, 65535 * 8);
  AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "counter_rng_cuda", [&] {
    counter_rng_kernel<scalar_t><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(
        out.mutable_data_ptr<scalar_t>(), index.const_data_ptr<int64_t>(), total, n, base1,
        base2, normal);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

TORCH_LIBRARY_IMPL(robustops, CUDA, m) {
  m.impl("counter_rng", TORCH_FN(counter_rng_op<&counter_rng_cuda>));
}

}  // namespace robustops
