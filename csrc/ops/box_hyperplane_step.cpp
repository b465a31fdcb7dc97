// box_hyperplane_step: the op's schema, argument checks, operand preparation and autograd
// kernel (a step of an attack: no gradient). The kernel: csrc/cpu/box_hyperplane_step.cpp
// (formulas in kernels/box_hyperplane_step.h); there is no CUDA kernel. The fake kernel,
// the plain-PyTorch reference and the Triton backend: robustops/ops/box_hyperplane_step.py.
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <cmath>
#include <string>

#include "box_hyperplane_step.h"
#include "ops/arg_checks.h"

namespace robustops {

namespace {

constexpr const char* kOp = "box_hyperplane_step";

}  // namespace

bool check_box_hyperplane_step_args(const at::Tensor& t, const at::Tensor& w,
                                    const at::Tensor& b, c10::string_view norm, double lo,
                                    double hi) {
  const std::pair<const char*, const at::Tensor*> named[] = {{"t", &t}, {"w", &w}, {"b", &b}};
  for (const auto& [name, x] : named) {
    TORCH_CHECK_VALUE(x->is_floating_point(), kOp, ": ", name,
                      " must be a floating-point tensor, got ", py_dtype(*x));
  }
  TORCH_CHECK_VALUE(t.dim() == 2, kOp, ": t must be (N, D) rows (flatten each sample with "
                    "t.flatten(1)), got shape ", py_shape(t));
  check_same_shape(kOp, "w", w, "t", t);
  TORCH_CHECK_VALUE(b.dim() == 1 && b.size(0) == t.size(0), kOp, ": b must be (N,) = (",
                    t.size(0), ",), one offset per row of t, got shape ", py_shape(b));
  check_same_device(kOp, "w", w, "t", t);
  check_same_device(kOp, "b", b, "t", t);
  TORCH_CHECK_VALUE(norm == "linf" || norm == "l2", kOp,
                    ": norm must be 'linf' or 'l2' (or inf / 2), got '", std::string(norm),
                    "'");
  TORCH_CHECK_VALUE(std::isfinite(lo) && std::isfinite(hi) && lo <= hi, kOp,
                    ": the box [lo, hi] must be finite with lo <= hi, got [", py_float(lo),
                    ", ", py_float(hi), "]");
  return norm == "l2";
}

at::Tensor box_hyperplane_step_run(const at::Tensor& t, const at::Tensor& w, const at::Tensor& b,
                                   c10::string_view norm, double lo, double hi,
                                   BoxHyperplaneStepKernel kernel) {
  const bool l2 = check_box_hyperplane_step_args(t, w, b, norm, lo, hi);
  // One dtype: float64 when any operand is, else float32 (half precision is computed in
  // float32: the kinks' order needs the bits).
  const bool wide = t.scalar_type() == at::kDouble || w.scalar_type() == at::kDouble ||
                    b.scalar_type() == at::kDouble;
  const auto dt = wide ? at::kDouble : at::kFloat;
  // (No dispatch of .to() when the dtype is already right: FAB calls this every step.)
  const at::Tensor t2 = (t.scalar_type() == dt ? t : t.to(dt)).contiguous();
  const at::Tensor w2 = (w.scalar_type() == dt ? w : w.to(dt)).contiguous();
  const at::Tensor b2 = (b.scalar_type() == dt ? b : b.to(dt)).contiguous();
  at::Tensor out = at::empty(t.sizes(), t2.options());
  kernel(out, t2, w2, b2, l2, lo, hi);
  return out;
}

namespace {

// ------------------------------------------------------------------------ autograd

// A step of an attack, no gradient: the kernel runs below autograd, so inputs that
// require grad leave nothing behind.
at::Tensor box_hyperplane_step_autograd(const at::Tensor& t, const at::Tensor& w,
                                        const at::Tensor& b, c10::string_view norm, double lo,
                                        double hi) {
  // Devices first: a mixed CPU/meta call would otherwise reach the Meta kernel. (The
  // rest is checked by the device kernel and the fake kernel; sizes may be symbolic here.)
  check_same_device(kOp, "w", w, "t", t);
  check_same_device(kOp, "b", b, "t", t);
  at::AutoDispatchBelowADInplaceOrView guard;
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("robustops::box_hyperplane_step", "")
                       .typed<decltype(box_hyperplane_step_autograd)>();
  return op.call(t, w, b, norm, lo, hi);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(robustops, m) {
  m.set_python_module("robustops.ops.box_hyperplane_step");
  m.def("box_hyperplane_step(Tensor t, Tensor w, Tensor b, str norm, float lo, float hi) -> "
        "Tensor");
}

TORCH_LIBRARY_IMPL(robustops, Autograd, m) {
  m.impl("box_hyperplane_step", &box_hyperplane_step_autograd);
}

}  // namespace robustops
