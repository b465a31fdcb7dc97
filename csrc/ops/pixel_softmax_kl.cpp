// pixel_softmax_kl: the op's schema, argument checks, the layout handling shared by the
// CPU and CUDA kernels, and the autograd kernels (the forward's backward is the backward
// op; the backward op's own derivative, the softmax Jacobian, is an ATen composition, so
// a loss may contain gradients of this term). Kernels: csrc/cpu/pixel_softmax_kl.cpp,
// csrc/cuda/pixel_softmax_kl.cu (math in kernels/pixel_softmax_kl.h); the fake kernels
// and the plain-PyTorch reference: robustops/ops/pixel_softmax_kl.py.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <c10/util/accumulate.h>
#include <torch/autograd.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/library.h>

#include "ops/attribution_common.h"
#include "pixel_softmax_kl.h"

namespace robustops {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace {

constexpr const char* kOp = "pixel_softmax_kl";
constexpr const char* kBackwardOp = "pixel_softmax_kl_backward";

// N: the number of pixels of (B, C, *pixels).
int64_t pixels(const at::Tensor& attr) {
  return c10::multiply_integers(attr.sizes().slice(2));
}

// (B, C, N) contiguous view or copy of attr.
at::Tensor planes(const at::Tensor& attr) {
  return attr.reshape({attr.size(0), attr.size(1), pixels(attr)}).contiguous();
}

void check_per_sample(const char* name, const at::Tensor& t, const at::Tensor& attr) {
  TORCH_CHECK_VALUE(t.dim() == 1 && t.size(0) == attr.size(0), kBackwardOp, ": ", name,
                    " must have shape (", attr.size(0), ",), got ", py_shape(t));
  check_same_device(kBackwardOp, name, t, "attr", attr);
}

}  // namespace

void check_pixel_softmax_kl_args(const at::Tensor& attr) {
  check_float_dtype(kOp, "attr", attr);
  TORCH_CHECK_VALUE(attr.dim() >= 3, kOp,
                    ": attr must be (B, C, *pixels) with at least 3 dims (e.g. (B, C, H, W)); "
                    "got shape ", py_shape(attr));
  TORCH_CHECK_VALUE(attr.size(1) > 0 && pixels(attr) > 0, kOp,
                    ": attr needs at least one channel and one pixel, got shape ",
                    py_shape(attr));
}

std::tuple<at::Tensor, at::Tensor> pixel_softmax_kl_run(const at::Tensor& attr,
                                                        PskKernel kernel) {
  check_pixel_softmax_kl_args(attr);
  const at::Tensor a = planes(attr);
  at::Tensor out = empty_output({attr.size(0)}, attr.options());
  at::Tensor lse =
      empty_output({attr.size(0)}, attr.options().dtype(at::toOpMathType(attr.scalar_type())));
  kernel(out, lse, a);
  return {out, lse};
}

at::Tensor pixel_softmax_kl_backward_run(const at::Tensor& grad_out, const at::Tensor& lse,
                                         const at::Tensor& attr, PskBackwardKernel kernel) {
  check_pixel_softmax_kl_args(attr);
  check_per_sample("grad_out", grad_out, attr);
  check_per_sample("lse", lse, attr);
  const at::Tensor a = planes(attr);
  const at::Tensor go = grad_out.to(attr.scalar_type()).contiguous();
  const at::Tensor l = lse.to(at::toOpMathType(attr.scalar_type())).contiguous();
  std::vector<int64_t> shape(attr.sizes().begin(), attr.sizes().end());
  shape.erase(shape.begin() + 1);  // (B, *pixels): one gradient for every channel
  at::Tensor grad = empty_output(shape, attr.options());
  at::Tensor grad_s = grad.view({a.size(0), a.size(2)});
  kernel(grad_s, go, l, a);
  return grad;
}

namespace {

// ------------------------------------------------------------------------ autograd

std::tuple<at::Tensor, at::Tensor> call_pixel_softmax_kl(const at::Tensor& attr) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("robustops::pixel_softmax_kl", "")
                       .typed<decltype(call_pixel_softmax_kl)>();
  return op.call(attr);
}

at::Tensor call_pixel_softmax_kl_backward(const at::Tensor& grad_out, const at::Tensor& lse,
                                          const at::Tensor& attr) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("robustops::pixel_softmax_kl_backward", "")
                       .typed<decltype(call_pixel_softmax_kl_backward)>();
  return op.call(grad_out, lse, attr);
}

class PixelSoftmaxKlFunction : public torch::autograd::Function<PixelSoftmaxKlFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& attr) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [out, lse] = call_pixel_softmax_kl(attr);
    // lse is an auxiliary output for backward: the derivatives account for its dependence
    // on attr analytically, so it carries no gradient of its own.
    ctx->mark_non_differentiable({lse});
    ctx->save_for_backward({lse, attr});
    return {out, lse};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& attr = saved[1];
    // One (B, *pixels) gradient shared by the channels: expanded, not copied.
    const at::Tensor gs = call_pixel_softmax_kl_backward(grad_outputs[0], saved[0], attr);
    return {gs.unsqueeze(1).expand_symint(attr.sym_sizes())};
  }
};

// The backward op's derivative: for G = grad_out (q - 1/N) (B, *pixels), q = softmax of the
// channel sum, and upstream h: d/dgrad_out = sum_i h_i q_i - mean(h) and
// d/dA[b, c, i] = grad_out_b q_i (h_i - sum_j q_j h_j) (the full softmax Jacobian: lse's
// dependence on attr is included here). ATen ops, so higher orders work too.
// (_backward_of_backward in the .py computes the same for the triton backend.)
class PixelSoftmaxKlBackwardFunction
    : public torch::autograd::Function<PixelSoftmaxKlBackwardFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& grad_out,
                            const at::Tensor& lse, const at::Tensor& attr) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({grad_out, attr});
    return call_pixel_softmax_kl_backward(grad_out, lse, attr);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &grad_out = saved[0], &attr = saved[1];
    const auto ct = at::toOpMathType(attr.scalar_type());
    const at::Tensor q = at::softmax(attr.to(ct).sum(1).flatten(1), -1);  // (B, N)
    const at::Tensor h = grads[0].to(ct).flatten(1);
    const at::Tensor qh = (q * h).sum(-1, true);
    const at::Tensor d_go = qh.squeeze(1) - h.mean(-1);
    const at::Tensor d_attr = (grad_out.to(ct).unsqueeze(1) * q * (h - qh))
                                  .reshape_symint(grads[0].sym_sizes())
                                  .unsqueeze(1)
                                  .expand_symint(attr.sym_sizes());
    return {d_go.to(grad_out.scalar_type()), at::Tensor(), d_attr.to(attr.scalar_type())};
  }
};

std::tuple<at::Tensor, at::Tensor> pixel_softmax_kl_autograd(const at::Tensor& attr) {
  if (torch::autograd::compute_requires_grad(attr)) {
    auto r = PixelSoftmaxKlFunction::apply(attr);
    return {r[0], r[1]};
  }
  at::AutoDispatchBelowADInplaceOrView guard;
  return call_pixel_softmax_kl(attr);
}

// Devices first: a mixed CPU/meta call would otherwise reach the Meta kernel. (The rest is
// checked by the device kernels and the fake kernel; sizes may be symbolic here.)
at::Tensor pixel_softmax_kl_backward_autograd(const at::Tensor& grad_out, const at::Tensor& lse,
                                              const at::Tensor& attr) {
  check_same_device(kBackwardOp, "grad_out", grad_out, "attr", attr);
  check_same_device(kBackwardOp, "lse", lse, "attr", attr);
  if (torch::autograd::compute_requires_grad(grad_out, attr)) {
    return PixelSoftmaxKlBackwardFunction::apply(grad_out, lse, attr);
  }
  at::AutoDispatchBelowADInplaceOrView guard;
  return call_pixel_softmax_kl_backward(grad_out, lse, attr);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(robustops, m) {
  m.set_python_module("robustops.ops.pixel_softmax_kl");
  m.def("pixel_softmax_kl(Tensor attr) -> (Tensor, Tensor)");
  m.def("pixel_softmax_kl_backward(Tensor grad_out, Tensor lse, Tensor attr) -> Tensor");
}

TORCH_LIBRARY_IMPL(robustops, Autograd, m) {
  m.impl("pixel_softmax_kl", &pixel_softmax_kl_autograd);
  m.impl("pixel_softmax_kl_backward", &pixel_softmax_kl_backward_autograd);
}

}  // namespace robustops
