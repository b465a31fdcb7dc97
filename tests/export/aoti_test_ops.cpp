// aoti_test_ops: a tiny Python-free custom-op library for the export/AOTInductor harness.
//
// Built by tests/export/test_aoti_export.py as a shared library, loaded in Python with
// torch.ops.load_library and in the C++ runner with --ops (dlopen). Its schemas carry
// the argument kinds the robustops ops use, so the harness checks each one through
// torch.export -> AOTInductor -> the C++ proxy executor before the real ops depend on it:
//   Tensor? and str arguments, float/int scalars, a tuple of int64 outputs, and a
//   mutable op (Tensor(a!) x) -> () like robustops::pgd_step_.
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <optional>
#include <string>

namespace {

// x + alpha * d(x) * scale, d = sign or tanh; scale: optional per-sample (B,) factors.
at::Tensor scaled_step(const at::Tensor& x, const std::optional<at::Tensor>& scale, double alpha,
                       c10::string_view mode) {
  TORCH_CHECK(mode == "sign" || mode == "tanh",
              "aoti_test::scaled_step: mode must be 'sign' or 'tanh', got '", std::string(mode),
              "'");
  at::Tensor d = mode == "sign" ? x.sign() : x.tanh();
  if (scale.has_value()) {
    TORCH_CHECK(scale->dim() == 1 && scale->size(0) == x.size(0),
                "aoti_test::scaled_step: scale must be (B,)");
    std::vector<int64_t> shape(x.dim(), 1);
    shape[0] = x.size(0);
    d = d.mul(scale->reshape(shape));
  }
  return x.add(d, alpha);
}

// Per row of x (B, N): the argmax and the count of entries above threshold, both int64.
std::tuple<at::Tensor, at::Tensor> row_stats(const at::Tensor& x, double threshold) {
  TORCH_CHECK(x.dim() == 2, "aoti_test::row_stats: x must be 2-D (B, N)");
  return {x.argmax(1), x.gt(threshold).sum(1, /*keepdim=*/false, at::kLong)};
}

// In place, returns nothing: x += y.
void add_(at::Tensor& x, const at::Tensor& y) { x.add_(y); }

}  // namespace

TORCH_LIBRARY(aoti_test, m) {
  m.def("scaled_step(Tensor x, Tensor? scale, float alpha, str mode) -> Tensor");
  m.def("row_stats(Tensor x, float threshold) -> (Tensor, Tensor)");
  m.def("add_(Tensor(a!) x, Tensor y) -> ()");
}

TORCH_LIBRARY_IMPL(aoti_test, CPU, m) {
  m.impl("scaled_step", &scaled_step);
  m.impl("row_stats", &row_stats);
  m.impl("add_", &add_);
}
