// CPU kernels of sign_matched_product: the math of kernels/sign_matched_product.h.
// Forward: one reduction per sample (at::parallel_for over samples); backward:
// elementwise over all B*N elements (at::parallel_for over element blocks).
// Both loops are branch-free (the sign test is a select) and vectorise.
#include "sign_matched_product.h"

#include <torch/library.h>

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>

#include <kernels/sign_matched_product.h>

#include "cpu/target_clones.h"

namespace robustops {
namespace {

using namespace kernels;

template <typename scalar_t, typename opmath_t>
RO_CPU_CLONES opmath_t row_value(const scalar_t* __restrict__ b, const scalar_t* __restrict__ d,
                                 int64_t n) {
  opmath_t acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i) {
    acc += smp_value<opmath_t>(static_cast<opmath_t>(b[i]), static_cast<opmath_t>(d[i]));
  }
  return acc;
}

template <typename scalar_t, typename opmath_t>
RO_CPU_CLONES void row_grad(scalar_t* __restrict__ gb, scalar_t* __restrict__ gd,
                            const scalar_t* __restrict__ b, const scalar_t* __restrict__ d,
                            opmath_t go, int64_t len) {
#pragma omp simd
  for (int64_t i = 0; i < len; ++i) {
    const opmath_t bv = static_cast<opmath_t>(b[i]), dv = static_cast<opmath_t>(d[i]);
    gb[i] = static_cast<scalar_t>(smp_grad_b<opmath_t>(bv, dv, go));
    gd[i] = static_cast<scalar_t>(smp_grad_d<opmath_t>(bv, dv, go));
  }
}

}  // namespace

void sign_matched_product_cpu(at::Tensor& out, const at::Tensor& b, const at::Tensor& d) {
  const int64_t rows = b.size(0), n = b.size(1);
  if (rows == 0) return;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, b.scalar_type(),
                                  "sign_matched_product_cpu", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const scalar_t* bp = b.const_data_ptr<scalar_t>();
    const scalar_t* dp = d.const_data_ptr<scalar_t>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(n, 1));
    at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        o[r] = static_cast<scalar_t>(row_value<scalar_t, opmath_t>(bp + r * n, dp + r * n, n));
      }
    });
  });
}

void sign_matched_product_backward_cpu(at::Tensor& grad_b, at::Tensor& grad_d,
                                       const at::Tensor& grad_out, const at::Tensor& b,
                                       const at::Tensor& d) {
  const int64_t rows = b.size(0), n = b.size(1), total = rows * n;
  if (total == 0) return;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, b.scalar_type(),
                                  "sign_matched_product_backward_cpu", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const scalar_t* bp = b.const_data_ptr<scalar_t>();
    const scalar_t* dp = d.const_data_ptr<scalar_t>();
    const scalar_t* go = grad_out.const_data_ptr<scalar_t>();
    scalar_t* gb = grad_b.mutable_data_ptr<scalar_t>();
    scalar_t* gd = grad_d.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, total, 32768, [&](int64_t begin, int64_t end) {
      // Split the block at sample boundaries: each run shares one grad_out value.
      for (int64_t e = begin; e < end;) {
        const int64_t r = e / n;
        const int64_t stop = std::min(end, (r + 1) * n);
        row_grad<scalar_t, opmath_t>(gb + e, gd + e, bp + e, dp + e,
                                     static_cast<opmath_t>(go[r]), stop - e);
        e = stop;
      }
    });
  });
}

TORCH_LIBRARY_IMPL(robustops, CPU, m) {
  m.impl("sign_matched_product", TORCH_FN(sign_matched_product_op<&sign_matched_product_cpu>));
  m.impl("sign_matched_product_backward",
         TORCH_FN(sign_matched_product_backward_op<&sign_matched_product_backward_cpu>));
}

}  // namespace robustops
