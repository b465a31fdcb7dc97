// group_orthogonality_loss: the schemas of the op and of its backward op, their argument
// checks and operand preparation shared by the CPU and CUDA kernels, and the autograd
// kernels. The kernels: csrc/cpu/group_orthogonality_loss.cpp,
// csrc/cuda/group_orthogonality_loss.cu (math in kernels/group_orthogonality_loss.h); the
// fake kernels, the plain-PyTorch references and the Triton backend:
// robustops/ops/group_orthogonality_loss.py.
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include "channel_kmeans.h"
#include "group_inhibition_mask.h"
#include "group_orthogonality_loss.h"
#include "ops/arg_checks.h"

namespace robustops {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace {

constexpr const char* kOp = "group_orthogonality_loss";
constexpr const char* kBackwardOp = "group_orthogonality_loss_backward";

}  // namespace

void check_group_orthogonality_loss_args(const char* op, const at::Tensor& features,
                                         const at::Tensor& assignment, int64_t num_groups) {
  TORCH_CHECK_VALUE(features.dim() == 4, op, ": features must be 4-D (B, C, H, W), got shape ",
                    py_shape(features));
  TORCH_CHECK_VALUE(features.scalar_type() == at::kFloat || features.scalar_type() == at::kDouble,
                    op, ": features must be float32 or float64, got ", py_dtype(features),
                    " (cast half/bfloat16 maps to float32)");
  check_assignment(op, features, assignment, num_groups);
}

at::Tensor group_orthogonality_loss_run(const at::Tensor& features, const at::Tensor& assignment,
                                        int64_t num_groups, bool check_labels,
                                        GroupOrthogonalityLossKernel kernel) {
  check_group_orthogonality_loss_args(kOp, features, assignment, num_groups);
  if (check_labels) check_group_labels(kOp, assignment, num_groups);
  at::Tensor out = at::empty({}, features.options());
  // No sample, or maps of no pixel: every inner product is 0, and so is the loss.
  if (features.numel() == 0) return out.zero_();
  kernel(out, features.contiguous(), assignment.contiguous(), num_groups);
  return out;
}

at::Tensor group_orthogonality_loss_backward_run(const at::Tensor& grad_out,
                                                 const at::Tensor& features,
                                                 const at::Tensor& assignment,
                                                 int64_t num_groups,
                                                 GroupOrthogonalityLossBackwardKernel kernel) {
  check_group_orthogonality_loss_args(kBackwardOp, features, assignment, num_groups);
  TORCH_CHECK_VALUE(grad_out.numel() == 1, kBackwardOp,
                    ": grad_out must hold one value (the loss is 0-d), got shape ",
                    py_shape(grad_out));
  check_same_device(kBackwardOp, "grad_out", grad_out, "features", features);
  at::Tensor grad = at::empty(features.sizes(), features.options());
  if (grad.numel() == 0) return grad;
  // Read on the device by the kernel: no host synchronisation.
  const at::Tensor go = grad_out.to(features.scalar_type()).reshape({}).contiguous();
  kernel(grad, go, features.contiguous(), assignment.contiguous(), num_groups);
  return grad;
}

namespace {

// ------------------------------------------------------------------------ autograd

at::Tensor call_group_orthogonality_loss(const at::Tensor& features, const at::Tensor& assignment,
                                         int64_t num_groups) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("robustops::group_orthogonality_loss", "")
                       .typed<decltype(call_group_orthogonality_loss)>();
  return op.call(features, assignment, num_groups);
}

at::Tensor call_group_orthogonality_loss_backward(const at::Tensor& grad_out,
                                                  const at::Tensor& features,
                                                  const at::Tensor& assignment,
                                                  int64_t num_groups) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("robustops::group_orthogonality_loss_backward", "")
                       .typed<decltype(call_group_orthogonality_loss_backward)>();
  return op.call(grad_out, features, assignment, num_groups);
}

// Saves only features and the labels: the backward op recomputes the group means.
class GroupOrthogonalityLossFunction
    : public torch::autograd::Function<GroupOrthogonalityLossFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& features,
                            const at::Tensor& assignment, int64_t num_groups) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({features, assignment});
    ctx->saved_data["num_groups"] = num_groups;
    return call_group_orthogonality_loss(features, assignment, num_groups);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    at::Tensor grad = call_group_orthogonality_loss_backward(
        grad_outputs[0], saved[0], saved[1], ctx->saved_data["num_groups"].toInt());
    // The labels and num_groups get no gradient.
    return {grad, at::Tensor(), at::Tensor()};
  }
};

void check_devices(const char* op, const at::Tensor& features, const at::Tensor& assignment) {
  TORCH_CHECK_VALUE(assignment.device() == features.device(), op, ": assignment is on ",
                    py_device(assignment), " but features are on ", py_device(features));
}

at::Tensor group_orthogonality_loss_autograd(const at::Tensor& features,
                                             const at::Tensor& assignment, int64_t num_groups) {
  // Devices first: a mixed CPU/meta call would otherwise reach the Meta kernel. (The
  // rest is checked by the device kernels and the fake kernel; sizes may be symbolic here.)
  check_devices(kOp, features, assignment);
  if (at::GradMode::is_enabled() && features.requires_grad()) {
    return GroupOrthogonalityLossFunction::apply(features, assignment, num_groups);
  }
  at::AutoDispatchBelowADInplaceOrView guard;
  return call_group_orthogonality_loss(features, assignment, num_groups);
}

// The backward op has no derivative of its own: a double backward says so (as the
// Python custom op did) instead of returning a silently wrong zero.
at::Tensor group_orthogonality_loss_backward_autograd(const at::Tensor& grad_out,
                                                      const at::Tensor& features,
                                                      const at::Tensor& assignment,
                                                      int64_t num_groups) {
  check_devices(kBackwardOp, features, assignment);
  TORCH_CHECK(!(at::GradMode::is_enabled() &&
                (grad_out.requires_grad() || features.requires_grad())),
              "group_orthogonality_loss: double backward (create_graph=True through the "
              "loss's gradient) is not implemented");
  at::AutoDispatchBelowADInplaceOrView guard;
  return call_group_orthogonality_loss_backward(grad_out, features, assignment, num_groups);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(robustops, m) {
  m.set_python_module("robustops.ops.group_orthogonality_loss");
  m.def("group_orthogonality_loss(Tensor features, Tensor assignment, int num_groups) -> Tensor");
  m.def("group_orthogonality_loss_backward(Tensor grad_out, Tensor features, Tensor assignment, "
        "int num_groups) -> Tensor");
}

TORCH_LIBRARY_IMPL(robustops, Autograd, m) {
  m.impl("group_orthogonality_loss", &group_orthogonality_loss_autograd);
  m.impl("group_orthogonality_loss_backward", &group_orthogonality_loss_backward_autograd);
}

}  // namespace robustops
