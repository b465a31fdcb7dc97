// CUDA kernels of ig_accumulate: the math of kernels/ig_accumulate.h, launched on the
// current stream. Grid-stride loops over the n elements; each thread runs the path
// sum over s itself (forward) or writes the S path gradients of its element
// (backward), so consecutive threads touch consecutive addresses of every path step
// (coalesced) and the accumulator stays in a register.
// Includes are kept minimal (no torch/extension.h) so this file compiles in seconds.
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <kernels/ig_accumulate.h>

#include "ig_accumulate.h"
#include "cuda/grid_blocks.cuh"

#include <torch/library.h>

namespace robustops {
namespace {

using namespace kernels;

constexpr int kThreads = 256;

template <typename scalar_t, typename opmath_t>
__global__ void ig_fwd_kernel(scalar_t* __restrict__ out, opmath_t* __restrict__ acc_out,
                              const scalar_t* __restrict__ g, const scalar_t* __restrict__ x,
                              const scalar_t* __restrict__ a, const opmath_t* __restrict__ w,
                              opmath_t uniform, int64_t steps, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n;
       e += stride) {
    opmath_t acc = 0;
    for (int64_t s = 0; s < steps; ++s) {
      acc = ig_term<opmath_t>(acc, w ? w[s] : uniform, static_cast<opmath_t>(g[s * n + e]));
    }
    if (acc_out) acc_out[e] = acc;
    out[e] = static_cast<scalar_t>(ig_finish<opmath_t>(
        acc, static_cast<opmath_t>(x[e]), a ? static_cast<opmath_t>(a[e]) : opmath_t(0)));
  }
}

template <typename scalar_t, typename opmath_t>
__global__ void ig_bwd_kernel(scalar_t* __restrict__ gp, scalar_t* __restrict__ gx,
                              const scalar_t* __restrict__ go, const opmath_t* __restrict__ ga,
                              const opmath_t* __restrict__ acc, const scalar_t* __restrict__ x,
                              const scalar_t* __restrict__ a, const opmath_t* __restrict__ w,
                              int64_t steps, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n;
       e += stride) {
    const opmath_t gov = static_cast<opmath_t>(go[e]);
    const opmath_t sg = ig_scaled_grad<opmath_t>(static_cast<opmath_t>(x[e]),
                                                 static_cast<opmath_t>(a[e]), gov, ga[e]);
    for (int64_t s = 0; s < steps; ++s) {
      gp[s * n + e] = static_cast<scalar_t>(ig_path_grad<opmath_t>(w[s], sg));
    }
    gx[e] = static_cast<scalar_t>(ig_end_grad<opmath_t>(acc[e], gov));
  }
}


}  // namespace

void ig_accumulate_cuda(at::Tensor& out, at::Tensor& acc, const at::Tensor& path_grads,
                        const at::Tensor& x, const at::Tensor& baseline,
                        const at::Tensor& weights) {
  const int64_t n = x.numel(), steps = path_grads.size(0);
  if (n == 0) return;
  c10::cuda::CUDAGuard guard(x.device());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(x.device().index());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "ig_accumulate_cuda", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    ig_fwd_kernel<scalar_t, opmath_t><<<grid_blocks(n, kThreads, 65535 * 8), kThreads, 0,
                                                         stream>>>(
        out.mutable_data_ptr<scalar_t>(),
        acc.defined() ? acc.mutable_data_ptr<opmath_t>() : nullptr,
        path_grads.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(),
        baseline.defined() ? baseline.const_data_ptr<scalar_t>() : nullptr,
        weights.defined() ? weights.const_data_ptr<opmath_t>() : nullptr,
        static_cast<opmath_t>(1.0 / static_cast<double>(steps)), steps, n);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void ig_accumulate_backward_cuda(at::Tensor& grad_path, at::Tensor& grad_x,
                                 const at::Tensor& grad_out, const at::Tensor& grad_acc,
                                 const at::Tensor& acc, const at::Tensor& x,
                                 const at::Tensor& baseline, const at::Tensor& weights) {
  const int64_t n = x.numel(), steps = grad_path.size(0);
  if (n == 0) return;
  c10::cuda::CUDAGuard guard(x.device());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(x.device().index());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "ig_accumulate_backward_cuda", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    ig_bwd_kernel<scalar_t, opmath_t><<<grid_blocks(n, kThreads, 65535 * 8), kThreads, 0,
                                                         stream>>>(
        grad_path.mutable_data_ptr<scalar_t>(), grad_x.mutable_data_ptr<scalar_t>(),
        grad_out.const_data_ptr<scalar_t>(), grad_acc.const_data_ptr<opmath_t>(),
        acc.const_data_ptr<opmath_t>(), x.const_data_ptr<scalar_t>(),
        baseline.const_data_ptr<scalar_t>(), weights.const_data_ptr<opmath_t>(), steps, n);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

TORCH_LIBRARY_IMPL(robustops, CUDA, m) {
  m.impl("ig_accumulate", TORCH_FN(ig_accumulate_op<&ig_accumulate_cuda>));
  m.impl("ig_accumulate_with_acc", TORCH_FN(ig_accumulate_with_acc_op<&ig_accumulate_cuda>));
  m.impl("ig_accumulate_backward",
         TORCH_FN(ig_accumulate_backward_op<&ig_accumulate_backward_cuda>));
}

}  // namespace robustops
