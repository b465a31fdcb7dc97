// CPU kernels of pgd_step: at::parallel_for loops over kernels/pgd_step.h.
#include "pgd_step.h"

#include <torch/library.h>

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <kernels/pgd_step.h>

// Compile the hot loops for AVX-512, AVX2 and baseline x86-64 and pick at load
// time: the default -march (SSE2) leaves most of the bandwidth unused.
#include "cpu/target_clones.h"

namespace robustops {
namespace {

using namespace kernels;

// Per-sample scalar: the tensor entry if given, else the Python float.
template <typename opmath_t>
inline opmath_t per_sample(const opmath_t* t, opmath_t fallback, int64_t b) {
  return t ? t[b] : fallback;
}

// One contiguous run of the store loop: out[j] = element(x[j], x_nat[j], g[j]).
// `out` may be `x` (same index only), so it is the one pointer not marked
// restrict; x_nat and grad never alias out (csrc/ops/pgd_step.cpp copies them if
// they do). Returns nonzero if x_nat, or x (kProbeX) or the result (otherwise), is
// not finite: see pgd_not_finite for why each norm probes what it does.
template <typename scalar_t, typename opmath_t, bool kProbeX, typename Element>
RO_CPU_CLONES int store_run(scalar_t* out, const scalar_t* x,
                            const scalar_t* __restrict__ xn,
                            const scalar_t* __restrict__ g, int64_t len,
                            Element element) {
  int bad = 0;
#pragma omp simd reduction(| : bad)
  for (int64_t j = 0; j < len; ++j) {
    const opmath_t xj = static_cast<opmath_t>(x[j]);
    const opmath_t xnj = static_cast<opmath_t>(xn[j]);
    const opmath_t v = element(xj, xnj, static_cast<opmath_t>(g[j]));
    out[j] = static_cast<scalar_t>(v);
    bad |= static_cast<int>(pgd_not_finite(kProbeX ? xj : v, xnj));
  }
  return bad;
}

template <typename scalar_t>
bool linf_cpu(scalar_t* out, const scalar_t* x, const scalar_t* xn,
              const scalar_t* g, int64_t batch, int64_t per_sample_numel,
              at::opmath_type<scalar_t> eps,
              const at::opmath_type<scalar_t>* eps_t,
              at::opmath_type<scalar_t> alpha,
              const at::opmath_type<scalar_t>* alpha_t,
              at::opmath_type<scalar_t> lo, at::opmath_type<scalar_t> hi) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t n = batch * per_sample_numel;
  std::atomic<int> any_bad{0};
  // Chunks cut across samples; inside a chunk each sample's run is one
  // branch-free loop with eps/alpha hoisted, so it vectorises.
  at::parallel_for(0, n, 32768, [&](int64_t begin, int64_t end) {
    int bad = 0;
    int64_t i = begin;
    while (i < end) {
      const int64_t b = i / per_sample_numel;
      const int64_t stop = std::min(end, (b + 1) * per_sample_numel);
      const opmath_t e = per_sample(eps_t, eps, b);
      const opmath_t a = per_sample(alpha_t, alpha, b);
      bad |= store_run<scalar_t, opmath_t, true>(
          out + i, x + i, xn + i, g + i, stop - i,
          [=](opmath_t xv, opmath_t xnv, opmath_t gv) {
            return pgd_linf_element<opmath_t>(xv, xnv, gv, e, a, lo, hi);
          });
      i = stop;
    }
    if (bad) any_bad.store(1, std::memory_order_relaxed);
  });
  return any_bad.load() == 0;
}

// Nonzero if some of the len values is NaN or +-Inf (the L2 step's rare path).
template <typename scalar_t, typename opmath_t>
int any_not_finite(const scalar_t* v, int64_t len) {
  int bad = 0;
  for (int64_t j = 0; j < len; ++j) {
    const opmath_t vj = static_cast<opmath_t>(v[j]);
    bad |= static_cast<int>(pgd_not_finite(vj, opmath_t(0)));
  }
  return bad;
}

// L2 pass 1: sum of squared (finite) gradient entries of one sample.
template <typename scalar_t, typename opmath_t>
RO_CPU_CLONES double l2_grad_sq(const scalar_t* __restrict__ g, int64_t d) {
  // opmath accumulators, one per SIMD lane (like ATen's vectorised sum).
  opmath_t acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t j = 0; j < d; ++j) {
    acc += pgd_l2_grad_sq<opmath_t>(static_cast<opmath_t>(g[j]));
  }
  return static_cast<double>(acc);
}

// L2 pass 2: squared norm of the unprojected displacement of one sample.
template <typename scalar_t, typename opmath_t>
RO_CPU_CLONES double l2_delta_sq(const scalar_t* __restrict__ x,
                                 const scalar_t* __restrict__ xn,
                                 const scalar_t* __restrict__ g, int64_t d,
                                 opmath_t scale) {
  opmath_t acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t j = 0; j < d; ++j) {
    const opmath_t dj = pgd_l2_delta<opmath_t>(
        static_cast<opmath_t>(x[j]), static_cast<opmath_t>(xn[j]),
        static_cast<opmath_t>(g[j]), scale);
    acc += dj * dj;
  }
  return static_cast<double>(acc);
}

template <typename scalar_t>
bool l2_cpu(scalar_t* out, const scalar_t* x, const scalar_t* xn,
            const scalar_t* g, int64_t batch, int64_t d,
            at::opmath_type<scalar_t> eps, const at::opmath_type<scalar_t>* eps_t,
            at::opmath_type<scalar_t> alpha,
            const at::opmath_type<scalar_t>* alpha_t,
            at::opmath_type<scalar_t> lo, at::opmath_type<scalar_t> hi) {
  using opmath_t = at::opmath_type<scalar_t>;
  std::atomic<int> any_bad{0};
  // One sample per task: its three passes (||g||, ||delta||, write) reuse the
  // sample's rows from cache, so DRAM sees each byte about once.
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(d, 1));
  at::parallel_for(0, batch, grain, [&](int64_t begin, int64_t end) {
    int bad = 0;
    for (int64_t b = begin; b < end; ++b) {
      const int64_t off = b * d;
      const opmath_t scale = per_sample(alpha_t, alpha, b) *
                             static_cast<opmath_t>(pgd_l2_inv_norm<double>(
                                 l2_grad_sq<scalar_t, opmath_t>(g + off, d)));
      const double d_sq =
          l2_delta_sq<scalar_t, opmath_t>(x + off, xn + off, g + off, d, scale);
      const opmath_t shrink = static_cast<opmath_t>(pgd_l2_shrink<double>(
          d_sq, static_cast<double>(per_sample(eps_t, eps, b))));
      // A NaN or infinite x makes ||x + step - x_nat||^2 NaN or inf (the step is
      // finite), while the result may be finite (shrink = eps / inf = 0 gives x_nat):
      // only then is x itself scanned (a finite x can overflow the sum too).
      if (!std::isfinite(d_sq)) bad |= any_not_finite<scalar_t, opmath_t>(x + off, d);
      bad |= store_run<scalar_t, opmath_t, false>(
          out + off, x + off, xn + off, g + off, d,
          [=](opmath_t xv, opmath_t xnv, opmath_t gv) {
            return pgd_l2_element<opmath_t>(xv, xnv, gv, scale, shrink, lo, hi);
          });
    }
    if (bad) any_bad.store(1, std::memory_order_relaxed);
  });
  return any_bad.load() == 0;
}

}  // namespace

bool pgd_step_cpu(at::Tensor& out, const at::Tensor& x, const at::Tensor& x_nat,
                  const at::Tensor& grad, double eps, double alpha,
                  const at::Tensor& eps_t, const at::Tensor& alpha_t, double lo,
                  double hi, bool l2) {
  const int64_t batch = x.size(0);
  if (batch == 0 || x.numel() == 0) return true;
  const int64_t d = x.numel() / batch;
  bool finite = true;
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, x.scalar_type(), "pgd_step_cpu", [&] {
        using opmath_t = at::opmath_type<scalar_t>;
        auto fn = l2 ? l2_cpu<scalar_t> : linf_cpu<scalar_t>;
        finite = fn(out.mutable_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(),
                    x_nat.const_data_ptr<scalar_t>(), grad.const_data_ptr<scalar_t>(),
                    batch, d, static_cast<opmath_t>(eps), optional_ptr<opmath_t>(eps_t),
                    static_cast<opmath_t>(alpha), optional_ptr<opmath_t>(alpha_t),
                    static_cast<opmath_t>(lo), static_cast<opmath_t>(hi));
      });
  return finite;
}

TORCH_LIBRARY_IMPL(robustops, CPU, m) {
  m.impl("pgd_step", TORCH_FN(pgd_step_op<&pgd_step_cpu>));
  m.impl("pgd_step_", TORCH_FN(pgd_step_inplace_op<&pgd_step_cpu>));
}

}  // namespace robustops
