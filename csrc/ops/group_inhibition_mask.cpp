// group_inhibition_mask: the op's schema, argument checks, operand preparation shared by
// the CPU and CUDA kernels, and the autograd kernel (the mask is a constant of the
// re-forward: no gradient). The kernels: csrc/cpu/group_inhibition_mask.cpp,
// csrc/cuda/group_inhibition_mask.cu (math in kernels/group_inhibition_mask.h); the fake
// kernel, the plain-PyTorch reference and the Triton backend:
// robustops/ops/group_inhibition_mask.py.
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <algorithm>

#include "channel_kmeans.h"
#include "group_inhibition_mask.h"
#include "ops/arg_checks.h"

namespace robustops {

namespace {

constexpr const char* kOp = "group_inhibition_mask";

void check_map(const char* name, const at::Tensor& t) {
  TORCH_CHECK_VALUE(t.dim() == 4, kOp, ": ", name, " must be 4-D (B, C, H, W), got shape ",
                    py_shape(t));
  TORCH_CHECK_VALUE(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, kOp, ": ",
                    name, " must be float32 or float64, got ", py_dtype(t),
                    " (cast half/bfloat16 maps to float32)");
}

}  // namespace

void check_group_inhibition_mask_args(const at::Tensor& features, const at::Tensor& grad,
                                      const at::Tensor& assignment, int64_t num_groups) {
  check_map("features", features);
  check_map("grad", grad);
  TORCH_CHECK_VALUE(grad.sizes() == features.sizes(), kOp, ": grad has shape ", py_shape(grad),
                    " but features have ", py_shape(features), "; G is dL/dF, the same shape");
  TORCH_CHECK_VALUE(grad.scalar_type() == features.scalar_type(), kOp, ": grad has dtype ",
                    py_dtype(grad), " but features have ", py_dtype(features),
                    "; they must match");
  TORCH_CHECK_VALUE(grad.device() == features.device(), kOp, ": grad is on ", py_device(grad),
                    " but features are on ", py_device(features));
  check_assignment(kOp, features, assignment, num_groups);
}

void check_group_labels(const char* op, const at::Tensor& assignment, int64_t num_groups) {
  const int64_t n = assignment.numel();
  if (n == 0) return;
  const at::Tensor a = assignment.contiguous();
  const int64_t* p = a.const_data_ptr<int64_t>();
  // One branch-free min/max pass (vectorises); the bad label is looked for only on error.
  int64_t lo = p[0], hi = p[0];
  for (int64_t i = 1; i < n; ++i) {
    lo = std::min(lo, p[i]);
    hi = std::max(hi, p[i]);
  }
  if (lo >= 0 && hi < num_groups) return;
  const int64_t cols = a.size(1);
  const int64_t* bad = std::find_if(p, p + n, [&](int64_t v) { return v < 0 || v >= num_groups; });
  const int64_t i = (bad - p) / cols, j = (bad - p) % cols;
  TORCH_CHECK_VALUE(false, op, ": assignment[", i, ", ", j, "] = ", *bad,
                    " is not a group label in [0, ", num_groups, ")");
}

at::Tensor group_inhibition_mask_run(const at::Tensor& features, const at::Tensor& grad,
                                     const at::Tensor& assignment, int64_t num_groups,
                                     bool check_labels, GroupInhibitionMaskKernel kernel) {
  check_group_inhibition_mask_args(features, grad, assignment, num_groups);
  if (check_labels) check_group_labels(kOp, assignment, num_groups);
  at::Tensor out = at::empty(features.sizes(), features.options());
  if (out.numel() == 0) return out;
  kernel(out, features.contiguous(), grad.contiguous(), assignment.contiguous(), num_groups);
  return out;
}

namespace {

// ------------------------------------------------------------------------ autograd

// The mask is a constant (as in the paper, where it comes from numpy): the kernel runs
// below autograd and the output never requires grad, whatever the inputs.
at::Tensor group_inhibition_mask_autograd(const at::Tensor& features, const at::Tensor& grad,
                                          const at::Tensor& assignment, int64_t num_groups) {
  // Devices first: a mixed CPU/meta call would otherwise reach the Meta kernel. (The
  // rest is checked by the device kernels and the fake kernel; sizes may be symbolic here.)
  TORCH_CHECK_VALUE(grad.device() == features.device(), kOp, ": grad is on ", py_device(grad),
                    " but features are on ", py_device(features));
  TORCH_CHECK_VALUE(assignment.device() == features.device(), kOp, ": assignment is on ",
                    py_device(assignment), " but features are on ", py_device(features));
  at::AutoDispatchBelowADInplaceOrView guard;
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("robustops::group_inhibition_mask", "")
                       .typed<decltype(group_inhibition_mask_autograd)>();
  return op.call(features, grad, assignment, num_groups);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(robustops, m) {
  m.set_python_module("robustops.ops.group_inhibition_mask");
  m.def("group_inhibition_mask(Tensor features, Tensor grad, Tensor assignment, int num_groups) "
        "-> Tensor");
}

TORCH_LIBRARY_IMPL(robustops, Autograd, m) {
  m.impl("group_inhibition_mask", &group_inhibition_mask_autograd);
}

}  // namespace robustops
