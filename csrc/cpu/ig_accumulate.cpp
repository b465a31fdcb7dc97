// CPU kernels of ig_accumulate: at::parallel_for over element blocks, the math of
// kernels/ig_accumulate.h.
//
// Forward: each task accumulates its block of acc (written straight into the acc output
// when there is one, else into a stack block; L1-resident at kBlock elements) over the S
// path steps, so every path gradient is read exactly once in streaming order. Backward: one shared factor per
// element, S scaled copies, and grad_x from the saved acc (no pass over the path
// gradients). Inner loops are branch-free so they vectorise.
#include "ig_accumulate.h"

#include <torch/library.h>

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>

#include <kernels/ig_accumulate.h>

#include "cpu/target_clones.h"

namespace robustops {
namespace {

using namespace kernels;

// Elements per accumulator block (2 KiB of floats / 4 KiB of doubles).
constexpr int64_t kBlock = 512;
// Elements per parallel task: enough work (S passes each) to amortise the fork.
constexpr int64_t kGrain = 8192;

template <typename scalar_t, typename opmath_t>
RO_CPU_CLONES void add_step(opmath_t* __restrict__ acc, const scalar_t* __restrict__ g,
                            opmath_t w, int64_t len) {
#pragma omp simd
  for (int64_t i = 0; i < len; ++i) acc[i] = ig_term<opmath_t>(acc[i], w, static_cast<opmath_t>(g[i]));
}

template <typename scalar_t, typename opmath_t>
RO_CPU_CLONES void finish(scalar_t* __restrict__ out, const opmath_t* __restrict__ acc,
                          const scalar_t* __restrict__ x, const scalar_t* __restrict__ a,
                          int64_t len) {
#pragma omp simd
  for (int64_t i = 0; i < len; ++i) {
    out[i] = static_cast<scalar_t>(
        ig_finish<opmath_t>(acc[i], static_cast<opmath_t>(x[i]), static_cast<opmath_t>(a[i])));
  }
}

// finish() for a zero baseline (the default): out = x * acc.
template <typename scalar_t, typename opmath_t>
RO_CPU_CLONES void finish_from_zero(scalar_t* __restrict__ out, const opmath_t* __restrict__ acc,
                                    const scalar_t* __restrict__ x, int64_t len) {
#pragma omp simd
  for (int64_t i = 0; i < len; ++i) {
    out[i] = static_cast<scalar_t>(
        ig_finish<opmath_t>(acc[i], static_cast<opmath_t>(x[i]), opmath_t(0)));
  }
}

template <typename scalar_t, typename opmath_t>
RO_CPU_CLONES void scaled_grad(opmath_t* __restrict__ sg, const scalar_t* __restrict__ go,
                               const opmath_t* __restrict__ ga, const scalar_t* __restrict__ x,
                               const scalar_t* __restrict__ a, int64_t len) {
#pragma omp simd
  for (int64_t i = 0; i < len; ++i) {
    sg[i] = ig_scaled_grad<opmath_t>(static_cast<opmath_t>(x[i]), static_cast<opmath_t>(a[i]),
                                     static_cast<opmath_t>(go[i]), ga[i]);
  }
}

template <typename scalar_t, typename opmath_t>
RO_CPU_CLONES void path_grad(scalar_t* __restrict__ gp, const opmath_t* __restrict__ sg,
                             opmath_t w, int64_t len) {
#pragma omp simd
  for (int64_t i = 0; i < len; ++i) gp[i] = static_cast<scalar_t>(ig_path_grad<opmath_t>(w, sg[i]));
}

template <typename scalar_t, typename opmath_t>
RO_CPU_CLONES void end_grad(scalar_t* __restrict__ gx, const opmath_t* __restrict__ acc,
                            const scalar_t* __restrict__ go, int64_t len) {
#pragma omp simd
  for (int64_t i = 0; i < len; ++i) {
    gx[i] = static_cast<scalar_t>(ig_end_grad<opmath_t>(acc[i], static_cast<opmath_t>(go[i])));
  }
}

}  // namespace

void ig_accumulate_cpu(at::Tensor& out, at::Tensor& acc, const at::Tensor& path_grads,
                       const at::Tensor& x, const at::Tensor& baseline,
                       const at::Tensor& weights) {
  const int64_t n = x.numel(), steps = path_grads.size(0);
  if (n == 0) return;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "ig_accumulate_cpu",
                                  [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const scalar_t* g = path_grads.const_data_ptr<scalar_t>();
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* ap = baseline.defined() ? baseline.const_data_ptr<scalar_t>() : nullptr;
    const opmath_t* w = weights.defined() ? weights.const_data_ptr<opmath_t>() : nullptr;
    const opmath_t uniform = static_cast<opmath_t>(1.0 / static_cast<double>(steps));
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    opmath_t* ac = acc.defined() ? acc.mutable_data_ptr<opmath_t>() : nullptr;
    at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
      opmath_t scratch[kBlock];  // the accumulator when acc is not wanted
      for (int64_t e0 = begin; e0 < end; e0 += kBlock) {
        const int64_t len = std::min(kBlock, end - e0);
        opmath_t* blk = ac ? ac + e0 : scratch;
        std::fill(blk, blk + len, opmath_t(0));
        for (int64_t s = 0; s < steps; ++s) {
          add_step<scalar_t, opmath_t>(blk, g + s * n + e0, w ? w[s] : uniform, len);
        }
        if (ap) {
          finish<scalar_t, opmath_t>(o + e0, blk, xp + e0, ap + e0, len);
        } else {
          finish_from_zero<scalar_t, opmath_t>(o + e0, blk, xp + e0, len);
        }
      }
    });
  });
}

void ig_accumulate_backward_cpu(at::Tensor& grad_path, at::Tensor& grad_x,
                                const at::Tensor& grad_out, const at::Tensor& grad_acc,
                                const at::Tensor& acc, const at::Tensor& x,
                                const at::Tensor& baseline, const at::Tensor& weights) {
  const int64_t n = x.numel(), steps = grad_path.size(0);
  if (n == 0) return;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "ig_accumulate_backward_cpu", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const scalar_t* go = grad_out.const_data_ptr<scalar_t>();
    const opmath_t* ga = grad_acc.const_data_ptr<opmath_t>();
    const opmath_t* ac = acc.const_data_ptr<opmath_t>();
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* ap = baseline.const_data_ptr<scalar_t>();
    const opmath_t* w = weights.const_data_ptr<opmath_t>();
    scalar_t* gp = grad_path.mutable_data_ptr<scalar_t>();
    scalar_t* gx = grad_x.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
      opmath_t sg[kBlock];
      for (int64_t e0 = begin; e0 < end; e0 += kBlock) {
        const int64_t len = std::min(kBlock, end - e0);
        scaled_grad<scalar_t, opmath_t>(sg, go + e0, ga + e0, xp + e0, ap + e0, len);
        for (int64_t s = 0; s < steps; ++s) {
          path_grad<scalar_t, opmath_t>(gp + s * n + e0, sg, w[s], len);
        }
        end_grad<scalar_t, opmath_t>(gx + e0, ac + e0, go + e0, len);
      }
    });
  });
}

TORCH_LIBRARY_IMPL(robustops, CPU, m) {
  m.impl("ig_accumulate", TORCH_FN(ig_accumulate_op<&ig_accumulate_cpu>));
  m.impl("ig_accumulate_with_acc", TORCH_FN(ig_accumulate_with_acc_op<&ig_accumulate_cpu>));
  m.impl("ig_accumulate_backward",
         TORCH_FN(ig_accumulate_backward_op<&ig_accumulate_backward_cpu>));
}

}  // namespace robustops
