// rank_metrics: the op's schema, argument checks, operand preparation and autograd kernel
// (evaluation metrics: no gradient). The kernel: csrc/cpu/rank_metrics.cpp (formulas in
// kernels/rank_metrics.h); there is no CUDA kernel. The fake kernel, the plain-PyTorch
// reference and the Triton backend: robustops/ops/rank_metrics.py.
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include "ops/arg_checks.h"
#include "rank_metrics.h"

namespace robustops {

namespace {

constexpr const char* kOp = "rank_metrics";

// Values per map: the product of the sizes after the batch dimension.
int64_t map_size(const at::Tensor& t) {
  int64_t n = 1;
  for (int64_t d = 1; d < t.dim(); ++d) n *= t.size(d);
  return n;
}

}  // namespace

void check_rank_metrics_args(const at::Tensor& a, const at::Tensor& b, int64_t k) {
  const std::pair<const char*, const at::Tensor*> named[] = {{"a", &a}, {"b", &b}};
  for (const auto& [name, t] : named) {
    TORCH_CHECK_VALUE(!t->is_complex() && t->scalar_type() != at::kBool, kOp, ": ", name,
                      " must be real-valued, got ", py_dtype(*t));
    TORCH_CHECK_VALUE(t->dim() >= 2, kOp, ": ", name,
                      " must be (B, *) maps (a batch of maps; use ", name,
                      "[None] for one pair), got shape ", py_shape(*t));
  }
  TORCH_CHECK_VALUE(a.sizes() == b.sizes(), kOp, ": a ", py_shape(a), " and b ", py_shape(b),
                    " must have one shape");
  TORCH_CHECK_VALUE(a.device() == b.device(), kOp, ": a is on ", py_device(a), " but b is on ",
                    py_device(b));
  const int64_t n = map_size(a);
  TORCH_CHECK_VALUE(n > 0, kOp, ": the maps are empty (shape ", py_shape(a), ")");
  TORCH_CHECK_VALUE(k >= 1 && k <= n, kOp, ": k must be an int in [1, ", n,
                    "] (the map size), got ", k);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> rank_metrics_run(const at::Tensor& a,
                                                                const at::Tensor& b, int64_t k,
                                                                RankMetricsKernel kernel) {
  check_rank_metrics_args(a, b, k);
  const int64_t rows = a.size(0);
  const auto opts = a.options().dtype(at::kDouble);
  at::Tensor topk = at::empty({rows}, opts);
  at::Tensor kendall = at::empty({rows}, opts);
  at::Tensor spearman = at::empty({rows}, opts);
  if (rows == 0) return {topk, kendall, spearman};
  // One floating dtype: float64 if either is float64 (or an integer type), else float32.
  const bool wide = a.scalar_type() == at::kDouble || b.scalar_type() == at::kDouble ||
                    !a.is_floating_point() || !b.is_floating_point();
  const auto dt = wide ? at::kDouble : at::kFloat;
  // The kernel reads B rows of N contiguous values: no reshape needed (nor a dispatch of
  // .to() when the dtype is already right: this op's per-call cost is measured).
  const at::Tensor a2 = (a.scalar_type() == dt ? a : a.to(dt)).contiguous();
  const at::Tensor b2 = (b.scalar_type() == dt ? b : b.to(dt)).contiguous();
  // The kernel sees every value while building its sort keys and reports NaN itself.
  TORCH_CHECK_VALUE(!kernel(topk, kendall, spearman, a2, b2, k), kOp,
                    ": the maps contain NaN; rank metrics need ordered values");
  return {topk, kendall, spearman};
}

namespace {

// ------------------------------------------------------------------------ autograd

// Evaluation metrics, no gradient: the kernel runs below autograd, so maps that require
// grad (attributions with their graph) leave nothing behind.
std::tuple<at::Tensor, at::Tensor, at::Tensor> rank_metrics_autograd(const at::Tensor& a,
                                                                     const at::Tensor& b,
                                                                     int64_t k) {
  // Devices first: a mixed CPU/meta call would otherwise reach the Meta kernel. (The
  // rest is checked by the device kernel and the fake kernel; sizes may be symbolic here.)
  TORCH_CHECK_VALUE(a.device() == b.device(), kOp, ": a is on ", py_device(a), " but b is on ",
                    py_device(b));
  at::AutoDispatchBelowADInplaceOrView guard;
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("robustops::rank_metrics", "")
                       .typed<decltype(rank_metrics_autograd)>();
  return op.call(a, b, k);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(robustops, m) {
  m.set_python_module("robustops.ops.rank_metrics");
  m.def("rank_metrics(Tensor a, Tensor b, int k) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(robustops, Autograd, m) {
  m.impl("rank_metrics", &rank_metrics_autograd);
}

}  // namespace robustops
