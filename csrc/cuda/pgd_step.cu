// CUDA kernels of pgd_step: the math of kernels/pgd_step.h, launched on the
// current stream. Includes are kept minimal (no torch/extension.h) so this file
// compiles in seconds.
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cub/block/block_reduce.cuh>

#include <kernels/pgd_step.h>

#include "pgd_step.h"

#include <torch/library.h>

namespace robustops {
namespace {

using namespace kernels;

constexpr int kThreads = 256;

template <typename opmath_t>
__device__ __forceinline__ opmath_t per_sample(const opmath_t* t, opmath_t fallback,
                                               int64_t b) {
  return t ? t[b] : fallback;
}

template <typename scalar_t, typename opmath_t>
__global__ void linf_kernel(scalar_t* out, const scalar_t* x, const scalar_t* xn,
                            const scalar_t* g, int64_t n, int64_t d, opmath_t eps,
                            const opmath_t* eps_t, opmath_t alpha,
                            const opmath_t* alpha_t, opmath_t lo, opmath_t hi) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       i < n; i += stride) {
    const int64_t b = i / d;
    out[i] = static_cast<scalar_t>(pgd_linf_element<opmath_t>(
        static_cast<opmath_t>(x[i]), static_cast<opmath_t>(xn[i]),
        static_cast<opmath_t>(g[i]), per_sample(eps_t, eps, b),
        per_sample(alpha_t, alpha, b), lo, hi));
  }
}

// One block per sample: two block reductions (||g||^2, ||delta||^2) and a write
// pass; the sample's rows are re-read from L2 cache.
template <typename scalar_t, typename opmath_t>
__global__ void l2_kernel(scalar_t* out, const scalar_t* x, const scalar_t* xn,
                          const scalar_t* g, int64_t d, opmath_t eps,
                          const opmath_t* eps_t, opmath_t alpha,
                          const opmath_t* alpha_t, opmath_t lo, opmath_t hi) {
  using BlockReduce = cub::BlockReduce<opmath_t, kThreads>;
  __shared__ typename BlockReduce::TempStorage tmp;
  __shared__ opmath_t shared_scale, shared_shrink;
  const int64_t b = blockIdx.x;
  const scalar_t* xb = x + b * d;
  const scalar_t* xnb = xn + b * d;
  const scalar_t* gb = g + b * d;
  scalar_t* ob = out + b * d;

  opmath_t acc = 0;
  for (int64_t j = threadIdx.x; j < d; j += kThreads) {
    acc += pgd_l2_grad_sq<opmath_t>(static_cast<opmath_t>(gb[j]));
  }
  opmath_t total = BlockReduce(tmp).Sum(acc);
  if (threadIdx.x == 0) {
    shared_scale = per_sample(alpha_t, alpha, b) * pgd_l2_inv_norm<opmath_t>(total);
  }
  __syncthreads();
  const opmath_t scale = shared_scale;

  acc = 0;
  for (int64_t j = threadIdx.x; j < d; j += kThreads) {
    const opmath_t dj = pgd_l2_delta<opmath_t>(static_cast<opmath_t>(xb[j]),
                                               static_cast<opmath_t>(xnb[j]),
                                               static_cast<opmath_t>(gb[j]), scale);
    acc += dj * dj;
  }
  total = BlockReduce(tmp).Sum(acc);
  if (threadIdx.x == 0) {
    shared_shrink = pgd_l2_shrink<opmath_t>(total, per_sample(eps_t, eps, b));
  }
  __syncthreads();
  const opmath_t shrink = shared_shrink;

  for (int64_t j = threadIdx.x; j < d; j += kThreads) {
    ob[j] = static_cast<scalar_t>(pgd_l2_element<opmath_t>(
        static_cast<opmath_t>(xb[j]), static_cast<opmath_t>(xnb[j]),
        static_cast<opmath_t>(gb[j]), scale, shrink, lo, hi));
  }
}

}  // namespace

bool pgd_step_cuda(at::Tensor& out, const at::Tensor& x, const at::Tensor& x_nat,
                   const at::Tensor& grad, double eps, double alpha,
                   const at::Tensor& eps_t, const at::Tensor& alpha_t, double lo,
                   double hi, bool l2) {
  const int64_t batch = x.size(0);
  const int64_t n = x.numel();
  if (batch == 0 || n == 0) return true;
  const int64_t d = n / batch;
  c10::cuda::CUDAGuard guard(x.device());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(x.device().index());
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, x.scalar_type(), "pgd_step_cuda", [&] {
        using opmath_t = at::opmath_type<scalar_t>;
        const opmath_t* ep = optional_ptr<opmath_t>(eps_t);
        const opmath_t* ap = optional_ptr<opmath_t>(alpha_t);
        if (l2) {
          l2_kernel<scalar_t, opmath_t><<<static_cast<unsigned>(batch), kThreads, 0, stream>>>(
              out.mutable_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(),
              x_nat.const_data_ptr<scalar_t>(), grad.const_data_ptr<scalar_t>(), d,
              static_cast<opmath_t>(eps), ep, static_cast<opmath_t>(alpha), ap,
              static_cast<opmath_t>(lo), static_cast<opmath_t>(hi));
        } else {
          const int64_t blocks = std::min<int64_t>((n + kThreads - 1) / kThreads, 65535 * 8);
          linf_kernel<scalar_t, opmath_t><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
              out.mutable_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(),
              x_nat.const_data_ptr<scalar_t>(), grad.const_data_ptr<scalar_t>(), n, d,
              static_cast<opmath_t>(eps), ep, static_cast<opmath_t>(alpha), ap,
              static_cast<opmath_t>(lo), static_cast<opmath_t>(hi));
        }
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return true;
}

TORCH_LIBRARY_IMPL(robustops, CUDA, m) {
  m.impl("pgd_step", TORCH_FN(pgd_step_op<&pgd_step_cuda>));
  m.impl("pgd_step_", TORCH_FN(pgd_step_inplace_op<&pgd_step_cuda>));
}

}  // namespace robustops
