// CPU kernels of pixel_softmax_kl: at::parallel_for over samples, the math of
// kernels/pixel_softmax_kl.h.
//
// Forward: per sample the channel sum s (N values) goes into a scratch buffer once,
// then one pass for max and sum and one for the exp-sum (branch-free reductions, and
// a vectorising expf). Backward: the channel sum again and one exp pass writing the
// (B, N) gradient, using the saved logsumexp.
#include "pixel_softmax_kl.h"

#include <torch/library.h>

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <limits>
#include <vector>

#include <kernels/pixel_softmax_kl.h>

#include "cpu/target_clones.h"

namespace robustops {
namespace {

using namespace kernels;

// s = sum over the C planes of one sample.
template <typename scalar_t, typename opmath_t>
RO_CPU_CLONES void channel_sum(opmath_t* __restrict__ s, const scalar_t* __restrict__ a,
                               int64_t c, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) s[i] = static_cast<opmath_t>(a[i]);
  for (int64_t ch = 1; ch < c; ++ch) {
    const scalar_t* ac = a + ch * n;
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) s[i] += static_cast<opmath_t>(ac[i]);
  }
}

template <typename opmath_t>
struct RowStats {
  opmath_t lse, sum;
};

// logsumexp and sum of s.
template <typename opmath_t>
RO_CPU_CLONES RowStats<opmath_t> row_stats(const opmath_t* __restrict__ s, int64_t n) {
  opmath_t mx = -std::numeric_limits<opmath_t>::infinity(), sum = 0;
#pragma omp simd reduction(max : mx) reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) {
    mx = std::max(mx, s[i]);
    sum += s[i];
  }
  opmath_t se = 0;
#pragma omp simd reduction(+ : se)
  for (int64_t i = 0; i < n; ++i) se += psk_exp_term<opmath_t>(s[i], mx);
  return {psk_lse<opmath_t>(mx, se), sum};
}

// grad[i] = go (exp(s_i - lse) - 1/N).
template <typename scalar_t, typename opmath_t>
RO_CPU_CLONES void grad_row(scalar_t* __restrict__ grad, const opmath_t* __restrict__ s,
                            opmath_t lse, opmath_t inv_n, opmath_t go, int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) grad[j] = static_cast<scalar_t>(psk_grad<opmath_t>(s[j], lse, inv_n, go));
}

// Samples per task: one sample is ~(C + 3) N operations.
int64_t sample_grain(int64_t c, int64_t n) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>((c + 3) * n, 1));
}

}  // namespace

void pixel_softmax_kl_cpu(at::Tensor& out, at::Tensor& lse, const at::Tensor& attr) {
  const int64_t b = attr.size(0), c = attr.size(1), n = attr.size(2);
  if (b == 0) return;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, attr.scalar_type(),
                                  "pixel_softmax_kl_cpu", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const scalar_t* a = attr.const_data_ptr<scalar_t>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    opmath_t* l = lse.mutable_data_ptr<opmath_t>();
    at::parallel_for(0, b, sample_grain(c, n), [&](int64_t begin, int64_t end) {
      std::vector<opmath_t> s(static_cast<size_t>(n));
      for (int64_t i = begin; i < end; ++i) {
        channel_sum<scalar_t, opmath_t>(s.data(), a + i * c * n, c, n);
        const RowStats<opmath_t> st = row_stats<opmath_t>(s.data(), n);
        l[i] = st.lse;
        o[i] = static_cast<scalar_t>(psk_value<opmath_t>(st.lse, st.sum, static_cast<opmath_t>(n)));
      }
    });
  });
}

void pixel_softmax_kl_backward_cpu(at::Tensor& grad_s, const at::Tensor& grad_out,
                                   const at::Tensor& lse, const at::Tensor& attr) {
  const int64_t b = attr.size(0), c = attr.size(1), n = attr.size(2);
  if (b == 0 || n == 0) return;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, attr.scalar_type(),
                                  "pixel_softmax_kl_backward_cpu", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const scalar_t* a = attr.const_data_ptr<scalar_t>();
    const scalar_t* go = grad_out.const_data_ptr<scalar_t>();
    const opmath_t* l = lse.const_data_ptr<opmath_t>();
    scalar_t* gs = grad_s.mutable_data_ptr<scalar_t>();
    const opmath_t inv_n = opmath_t(1) / static_cast<opmath_t>(n);
    at::parallel_for(0, b, sample_grain(c, n), [&](int64_t begin, int64_t end) {
      std::vector<opmath_t> s(static_cast<size_t>(n));
      for (int64_t i = begin; i < end; ++i) {
        channel_sum<scalar_t, opmath_t>(s.data(), a + i * c * n, c, n);
        grad_row<scalar_t, opmath_t>(gs + i * n, s.data(), l[i], inv_n,
                                     static_cast<opmath_t>(go[i]), n);
      }
    });
  });
}

TORCH_LIBRARY_IMPL(robustops, CPU, m) {
  m.impl("pixel_softmax_kl", TORCH_FN(pixel_softmax_kl_op<&pixel_softmax_kl_cpu>));
  m.impl("pixel_softmax_kl_backward",
         TORCH_FN(pixel_softmax_kl_backward_op<&pixel_softmax_kl_backward_cpu>));
}

}  // namespace robustops
