// sign_matched_product: the op's schema, argument checks, the layout handling shared by
// the CPU and CUDA kernels, and the autograd kernels (the forward's backward is the
// backward op; the backward op's own derivative is an ATen composition, so a loss may
// contain gradients of this term). Kernels: csrc/cpu/sign_matched_product.cpp,
// csrc/cuda/sign_matched_product.cu (math in kernels/sign_matched_product.h); the fake
// kernels and the plain-PyTorch reference: robustops/ops/sign_matched_product.py.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <c10/util/accumulate.h>
#include <torch/autograd.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/library.h>

#include "ops/attribution_common.h"
#include "sign_matched_product.h"

namespace robustops {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace {

constexpr const char* kOp = "sign_matched_product";
constexpr const char* kBackwardOp = "sign_matched_product_backward";

}  // namespace

void check_sign_matched_product_args(const at::Tensor& b, const at::Tensor& d) {
  const std::pair<const char*, const at::Tensor*> named[] = {{"b", &b}, {"d", &d}};
  for (const auto& [name, t] : named) {
    check_float_dtype(kOp, name, *t);
    TORCH_CHECK_VALUE(t->dim() >= 1, kOp, ": ", name,
                      " must have a batch dimension (B, *), got a scalar");
  }
  TORCH_CHECK_VALUE(d.sizes() == b.sizes(), kOp, ": b ", py_shape(b), " and d ", py_shape(d),
                    " must have the same shape");
  TORCH_CHECK_VALUE(d.scalar_type() == b.scalar_type(), kOp, ": d has dtype ", py_dtype(d),
                    " but b has ", py_dtype(b));
  check_same_device(kOp, "d", d, "b", b);
}

namespace {

// (B, N) contiguous view or copy of a (B, *) tensor.
at::Tensor rows_of(const at::Tensor& t) {
  return t.reshape({t.size(0), c10::multiply_integers(t.sizes().slice(1))}).contiguous();
}

}  // namespace

at::Tensor sign_matched_product_run(const at::Tensor& b, const at::Tensor& d, SmpKernel kernel) {
  check_sign_matched_product_args(b, d);
  const at::Tensor bb = rows_of(b), dd = rows_of(d);
  at::Tensor out = empty_output({b.size(0)}, b.options());
  kernel(out, bb, dd);
  return out;
}

std::tuple<at::Tensor, at::Tensor> sign_matched_product_backward_run(
    const at::Tensor& grad_out, const at::Tensor& b, const at::Tensor& d,
    SmpBackwardKernel kernel) {
  check_sign_matched_product_args(b, d);
  TORCH_CHECK_VALUE(grad_out.dim() == 1 && grad_out.size(0) == b.size(0), kBackwardOp,
                    ": grad_out must have shape (", b.size(0), ",), got ", py_shape(grad_out));
  check_same_device(kBackwardOp, "grad_out", grad_out, "b", b);
  const at::Tensor bb = rows_of(b), dd = rows_of(d);
  const at::Tensor go = grad_out.to(b.scalar_type()).contiguous();
  at::Tensor grad_b = empty_output(b.sizes(), b.options());
  at::Tensor grad_d = empty_output(b.sizes(), b.options());
  at::Tensor gb = grad_b.view(bb.sizes()), gd = grad_d.view(bb.sizes());
  kernel(gb, gd, go, bb, dd);
  return {grad_b, grad_d};
}

namespace {

// ------------------------------------------------------------------------ autograd

at::Tensor call_sign_matched_product(const at::Tensor& b, const at::Tensor& d) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("robustops::sign_matched_product", "")
                       .typed<decltype(call_sign_matched_product)>();
  return op.call(b, d);
}

std::tuple<at::Tensor, at::Tensor> call_sign_matched_product_backward(const at::Tensor& grad_out,
                                                                      const at::Tensor& b,
                                                                      const at::Tensor& d) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("robustops::sign_matched_product_backward", "")
                       .typed<decltype(call_sign_matched_product_backward)>();
  return op.call(grad_out, b, d);
}

class SignMatchedProductFunction : public torch::autograd::Function<SignMatchedProductFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& b, const at::Tensor& d) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({b, d});
    return call_sign_matched_product(b, d);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    auto [gb, gd] = call_sign_matched_product_backward(grad_outputs[0], saved[0], saved[1]);
    return {gb, gd};
  }
};

// (B, 1, ..., 1): a per-sample value broadcast against a (B, *) tensor of `ndim` dims.
at::Tensor per_sample_column(const at::Tensor& v, const at::Tensor& like) {
  std::vector<c10::SymInt> shape(like.dim(), 1);
  shape[0] = like.sym_size(0);
  return v.reshape_symint(shape);
}

// Sum over every dimension but the first: (B, *) -> (B,).
at::Tensor row_sum(const at::Tensor& t) {
  if (t.dim() == 1) return t;
  std::vector<int64_t> dims(t.dim() - 1);
  for (int64_t i = 1; i < t.dim(); ++i) dims[i - 1] = i;
  return t.sum(dims);
}

// The backward op's derivative, with the match mask m = [sign b == sign d] held constant:
// for upstream (h_b, h_d) of (grad_b, grad_d) = (go m d, go (m b + (1 - m) sign d)),
//   d/dgo = sum_j h_b m d + h_d (m b + (1 - m) sign d),  d/db = go m h_d,  d/dd = go m h_b.
// ATen ops, so it is differentiable again. (_backward_of_backward in the .py, for triton.)
class SignMatchedProductBackwardFunction
    : public torch::autograd::Function<SignMatchedProductBackwardFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& grad_out,
                               const at::Tensor& b, const at::Tensor& d) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({grad_out, b, d});
    auto [gb, gd] = call_sign_matched_product_backward(grad_out, b, d);
    return {gb, gd};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &go = saved[0], &b = saved[1], &d = saved[2];
    const auto ct = at::toOpMathType(b.scalar_type());
    const at::Tensor bc = b.to(ct), dc = d.to(ct);
    const at::Tensor g = per_sample_column(go.to(ct), b);
    const at::Tensor m = at::sign(bc).eq(at::sign(dc)).to(ct);
    const at::Tensor hb = grads[0].to(ct), hd = grads[1].to(ct);
    const at::Tensor d_go = row_sum(hb * m * dc + hd * (m * bc + (1 - m) * at::sign(dc)));
    const at::Tensor gm = g * m;
    return {d_go.to(go.scalar_type()), (gm * hd).to(b.scalar_type()),
            (gm * hb).to(d.scalar_type())};
  }
};

// Devices first: a mixed CPU/meta call would otherwise reach the Meta kernel. (The rest is
// checked by the device kernels and the fake kernel; sizes may be symbolic here.)
at::Tensor sign_matched_product_autograd(const at::Tensor& b, const at::Tensor& d) {
  check_same_device(kOp, "d", d, "b", b);
  if (torch::autograd::compute_requires_grad(b, d)) {
    return SignMatchedProductFunction::apply(b, d);
  }
  at::AutoDispatchBelowADInplaceOrView guard;
  return call_sign_matched_product(b, d);
}

std::tuple<at::Tensor, at::Tensor> sign_matched_product_backward_autograd(
    const at::Tensor& grad_out, const at::Tensor& b, const at::Tensor& d) {
  check_same_device(kBackwardOp, "d", d, "b", b);
  check_same_device(kBackwardOp, "grad_out", grad_out, "b", b);
  if (torch::autograd::compute_requires_grad(grad_out, b, d)) {
    auto r = SignMatchedProductBackwardFunction::apply(grad_out, b, d);
    return {r[0], r[1]};
  }
  at::AutoDispatchBelowADInplaceOrView guard;
  return call_sign_matched_product_backward(grad_out, b, d);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(robustops, m) {
  m.set_python_module("robustops.ops.sign_matched_product");
  m.def("sign_matched_product(Tensor b, Tensor d) -> Tensor");
  m.def("sign_matched_product_backward(Tensor grad_out, Tensor b, Tensor d) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(robustops, Autograd, m) {
  m.impl("sign_matched_product", &sign_matched_product_autograd);
  m.impl("sign_matched_product_backward", &sign_matched_product_backward_autograd);
}

}  // namespace robustops
