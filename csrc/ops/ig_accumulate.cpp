// ig_accumulate: the ops' schemas (ig_accumulate -> out; ig_accumulate_with_acc -> (out,
// acc), what autograd runs; ig_accumulate_backward), argument checks, the layout handling
// shared by the CPU and CUDA kernels, and the autograd kernels (the forward's backward is
// the backward op, which reads only (B, *) tensors: acc is saved, not the (S, B, *) path
// gradients; the backward op's own derivative is an ATen composition, so a loss may
// contain gradients of IG). Kernels: csrc/cpu/ig_accumulate.cpp,
// csrc/cuda/ig_accumulate.cu (math in kernels/ig_accumulate.h); the fake kernels and the
// plain-PyTorch reference: robustops/ops/ig_accumulate.py.
#include <ATen/ATen.h>
#include <ATen/ExpandUtils.h>
#include <ATen/OpMathType.h>
#include <torch/autograd.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/library.h>

#include "ig_accumulate.h"
#include "ops/attribution_common.h"

namespace robustops {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace {

constexpr const char* kOp = "ig_accumulate";
constexpr const char* kBackwardOp = "ig_accumulate_backward";

// `t` has x's dtype and device, or a ValueError.
void check_like_x(const char* op, const char* name, const at::Tensor& t, const at::Tensor& x) {
  TORCH_CHECK_VALUE(t.scalar_type() == x.scalar_type(), op, ": ", name, " has dtype ",
                    py_dtype(t), " but x has ", py_dtype(x), "; they must match");
  check_same_device(op, name, t, "x", x);
}

// "2, 4": x's sizes inside "(S, ...)".
std::string joined(c10::IntArrayRef sizes) {
  std::string s;
  for (size_t i = 0; i < sizes.size(); ++i) s += (i ? ", " : "") + std::to_string(sizes[i]);
  return s;
}

}  // namespace

void check_ig_accumulate_args(const at::Tensor& path_grads, const at::Tensor& x,
                              const std::optional<at::Tensor>& baseline,
                              const std::optional<at::Tensor>& weights) {
  check_float_dtype(kOp, "path_grads", path_grads);
  check_float_dtype(kOp, "x", x);
  if (baseline.has_value()) check_float_dtype(kOp, "baseline", *baseline);
  check_like_x(kOp, "path_grads", path_grads, x);
  if (baseline.has_value()) check_like_x(kOp, "baseline", *baseline, x);
  TORCH_CHECK_VALUE(x.dim() >= 1, kOp, ": x must have a batch dimension (B, *), got a scalar");
  TORCH_CHECK_VALUE(path_grads.dim() == x.dim() + 1 && path_grads.sizes().slice(1) == x.sizes(),
                    kOp, ": path_grads must be (S, *x.shape) = (S, ", joined(x.sizes()),
                    "), got ", py_shape(path_grads));
  const int64_t steps = path_grads.size(0);
  TORCH_CHECK_VALUE(steps > 0, kOp, ": path_grads has no path points (S = 0)");
  if (baseline.has_value()) {
    TORCH_CHECK_VALUE(at::is_expandable_to(baseline->sizes(), x.sizes()), kOp, ": baseline ",
                      py_shape(*baseline), " does not broadcast to x ", py_shape(x));
  }
  if (weights.has_value()) {
    TORCH_CHECK_VALUE(weights->dim() == 1 && weights->size(0) == steps &&
                          weights->is_floating_point(),
                      kOp, ": weights must be a float (S,) = (", steps, ",) tensor, got ",
                      py_shape(*weights), " ", py_dtype(*weights));
    TORCH_CHECK_VALUE(!weights->requires_grad(), kOp,
                      ": weights are constants (quadrature weights) and get no gradient; pass "
                      "weights.detach()");
  }
}

namespace {

void check_ig_accumulate_backward_args(const at::Tensor& grad_out, const at::Tensor& grad_acc,
                                       const at::Tensor& acc, const at::Tensor& x,
                                       const at::Tensor& baseline, const at::Tensor& weights) {
  check_float_dtype(kBackwardOp, "x", x);
  TORCH_CHECK_VALUE(x.dim() >= 1, kBackwardOp,
                    ": x must have a batch dimension (B, *), got a scalar");
  const std::pair<const char*, const at::Tensor*> like_x[] = {
      {"grad_out", &grad_out}, {"grad_acc", &grad_acc}, {"acc", &acc}, {"baseline", &baseline}};
  for (const auto& [name, t] : like_x) {
    check_float_dtype(kBackwardOp, name, *t);
    check_same_shape(kBackwardOp, name, *t, "x", x);
    check_same_device(kBackwardOp, name, *t, "x", x);
  }
  TORCH_CHECK_VALUE(weights.dim() == 1 && weights.size(0) > 0 && weights.is_floating_point(),
                    kBackwardOp, ": weights must be a float (S,) tensor with S > 0, got ",
                    py_shape(weights), " ", py_dtype(weights));
}

// Dense with x's strides: the kernels walk every operand as one block of n elements,
// and `stacked` (when defined) as S such blocks one after another.
bool same_dense_layout(const at::Tensor& x, std::initializer_list<const at::Tensor*> others,
                       const at::Tensor& stacked) {
  if (!x.is_non_overlapping_and_dense()) return false;
  const auto st = x.strides();
  if (!stacked.is_non_overlapping_and_dense() || stacked.stride(0) != x.numel() ||
      stacked.strides().slice(1) != st) {
    return false;
  }
  for (const at::Tensor* t : others) {
    if (t->strides() != st) return false;
  }
  return true;
}

// empty_like(x) in `dtype`: x's strides when x is dense (as empty_like keeps them).
at::Tensor empty_like_x(const at::Tensor& x, at::ScalarType dtype) {
  const auto options = x.options().dtype(dtype);
  return x.is_non_overlapping_and_dense() ? empty_output_strided(x.sizes(), x.strides(), options)
                                          : at::empty_like(x, options);
}

// `t` with `ref`'s strides in `dtype`, copying only when they differ.
at::Tensor like(const at::Tensor& t, const at::Tensor& ref, at::ScalarType dtype) {
  if (t.scalar_type() == dtype && t.strides() == ref.strides()) return t;
  at::Tensor out = empty_like_x(ref, dtype);
  out.copy_(t);
  return out;
}

// An uninitialised (S, *x.shape) tensor whose every step has x's layout (when x is dense).
// (_stacked_empty in robustops/ops/ig_accumulate.py: the fake kernel's twin.)
at::Tensor stacked_empty(const at::Tensor& x, int64_t steps) {
  std::vector<int64_t> sizes{steps};
  sizes.insert(sizes.end(), x.sizes().begin(), x.sizes().end());
  if (!x.is_non_overlapping_and_dense()) return empty_output(sizes, x.options());
  std::vector<int64_t> strides{x.numel()};
  strides.insert(strides.end(), x.strides().begin(), x.strides().end());
  return empty_output_strided(sizes, strides, x.options());
}

// A contiguous tensor to compute into when `t` is not contiguous itself.
at::Tensor contiguous_target(const at::Tensor& t) {
  return t.is_contiguous() ? t : empty_output(t.sizes(), t.options());
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> ig_accumulate_run(const at::Tensor& path_grads,
                                                     const at::Tensor& x,
                                                     const std::optional<at::Tensor>& baseline,
                                                     const std::optional<at::Tensor>& weights,
                                                     bool with_acc, IgKernel kernel) {
  check_ig_accumulate_args(path_grads, x, baseline, weights);
  const auto ct = at::toOpMathType(x.scalar_type());
  at::Tensor out = empty_like_x(x, x.scalar_type());
  at::Tensor acc = with_acc ? empty_like_x(x, ct) : at::Tensor();
  if (x.numel() == 0) return {out, acc};
  // The forward kernels read an undefined baseline as zeros and undefined weights as 1/S.
  at::Tensor w;
  if (weights.has_value()) {
    w = *weights;
    if (w.scalar_type() != ct || w.device() != x.device()) w = w.to(x.device(), ct);
    w = w.contiguous();
  }
  at::Tensor a;
  if (baseline.has_value()) {
    a = baseline->sizes() == x.sizes() ? *baseline : baseline->expand(x.sizes());
  }
  if (same_dense_layout(x, {&out}, path_grads) && (!a.defined() || a.strides() == x.strides()) &&
      (!acc.defined() || acc.strides() == x.strides())) {
    kernel(out, acc, path_grads, x, a, w);
    return {out, acc};
  }
  at::Tensor t_out = contiguous_target(out);
  at::Tensor t_acc = acc.defined() ? contiguous_target(acc) : acc;
  kernel(t_out, t_acc, path_grads.contiguous(), x.contiguous(),
         a.defined() ? a.contiguous() : a, w);
  if (!t_out.is_same(out)) out.copy_(t_out);
  if (!t_acc.is_same(acc)) acc.copy_(t_acc);
  return {out, acc};
}

std::tuple<at::Tensor, at::Tensor> ig_accumulate_backward_run(
    const at::Tensor& grad_out, const at::Tensor& grad_acc, const at::Tensor& acc,
    const at::Tensor& x, const at::Tensor& baseline, const at::Tensor& weights,
    IgBackwardKernel kernel) {
  check_ig_accumulate_backward_args(grad_out, grad_acc, acc, x, baseline, weights);
  const auto ct = at::toOpMathType(x.scalar_type());
  at::Tensor gp = stacked_empty(x, weights.size(0));
  at::Tensor gx = empty_like_x(x, x.scalar_type());
  if (x.numel() == 0) return {gp, gx};
  // Autograd often hands over expanded or differently strided gradients.
  const at::Tensor go = like(grad_out, x, x.scalar_type()), ga = like(grad_acc, x, ct);
  const at::Tensor ac = like(acc, x, ct), a = like(baseline, x, x.scalar_type());
  const at::Tensor w = weights.to(ct).contiguous();
  if (same_dense_layout(x, {&go, &ga, &ac, &a, &gx}, gp)) {
    kernel(gp, gx, go, ga, ac, x, a, w);
    return {gp, gx};
  }
  at::Tensor tp = contiguous_target(gp), tx = contiguous_target(gx);
  kernel(tp, tx, go.contiguous(), ga.contiguous(), ac.contiguous(), x.contiguous(),
         a.contiguous(), w);
  if (!tp.is_same(gp)) gp.copy_(tp);
  if (!tx.is_same(gx)) gx.copy_(tx);
  return {gp, gx};
}

namespace {

// ------------------------------------------------------------------------ autograd

at::Tensor call_ig_accumulate(const at::Tensor& path_grads, const at::Tensor& x,
                              const std::optional<at::Tensor>& baseline,
                              const std::optional<at::Tensor>& weights) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("robustops::ig_accumulate", "")
                       .typed<decltype(call_ig_accumulate)>();
  return op.call(path_grads, x, baseline, weights);
}

std::tuple<at::Tensor, at::Tensor> call_ig_accumulate_with_acc(
    const at::Tensor& path_grads, const at::Tensor& x, const std::optional<at::Tensor>& baseline,
    const std::optional<at::Tensor>& weights) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("robustops::ig_accumulate_with_acc", "")
                       .typed<decltype(call_ig_accumulate_with_acc)>();
  return op.call(path_grads, x, baseline, weights);
}

std::tuple<at::Tensor, at::Tensor> call_ig_accumulate_backward(
    const at::Tensor& grad_out, const at::Tensor& grad_acc, const at::Tensor& acc,
    const at::Tensor& x, const at::Tensor& baseline, const at::Tensor& weights) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("robustops::ig_accumulate_backward", "")
                       .typed<decltype(call_ig_accumulate_backward)>();
  return op.call(grad_out, grad_acc, acc, x, baseline, weights);
}

// (S, 1, ..., 1): the weights broadcast against (S, *x.shape).
at::Tensor steps_column(const at::Tensor& w, const at::Tensor& x) {
  std::vector<c10::SymInt> shape(x.dim() + 1, 1);
  shape[0] = w.sym_size(0);
  return w.reshape_symint(shape);
}

// baseline (any shape broadcastable to x) and weights are given as tensors: the forward's
// defaults (zeros, 1/S) are filled in by the autograd kernel, since the backward needs them.
class IgAccumulateFunction : public torch::autograd::Function<IgAccumulateFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& path_grads,
                               const at::Tensor& x, const at::Tensor& baseline,
                               const at::Tensor& weights) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [out, acc] = call_ig_accumulate_with_acc(path_grads, x, baseline, weights);
    // acc, not the (S, B, *) path gradients: the backward needs nothing else. acc is an
    // output (so the backward's use of it is differentiable in the path gradients), which
    // robustops::ig_accumulate does not return.
    ctx->save_for_backward({acc, x, baseline, weights});
    return {out, acc};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &acc = saved[0], &x = saved[1], &baseline = saved[2], &w = saved[3];
    auto [gp, gx] = call_ig_accumulate_backward(
        grads[0], grads[1], acc, x, baseline.expand_symint(x.sym_sizes()), w);
    // grad_baseline = -grad_x, summed over the dimensions the baseline was broadcast along;
    // the weights are constants.
    at::Tensor ga;
    if (ctx->needs_input_grad(2)) ga = at::sum_to(gx.neg(), baseline.sym_sizes());
    return {gp, gx, ga, at::Tensor()};
  }
};

// The backward op's derivative: with d = x - baseline and H = sum_s w_s h_path[s] for
// upstream (h_path, h_x) of grad_path[s] = w_s (d grad_out + grad_acc), grad_x = grad_out acc:
//   d/dgrad_out = d H + h_x acc,  d/dgrad_acc = H,  d/dacc = grad_out h_x,
//   d/dx = grad_out H = -d/dbaseline.
// ATen ops, so it is differentiable again (third order and up). (_backward_of_backward in
// the .py computes the same for the triton backend.)
class IgAccumulateBackwardFunction
    : public torch::autograd::Function<IgAccumulateBackwardFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& grad_out,
                               const at::Tensor& grad_acc, const at::Tensor& acc,
                               const at::Tensor& x, const at::Tensor& baseline,
                               const at::Tensor& weights) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({grad_out, acc, x, baseline, weights});
    auto [gp, gx] = call_ig_accumulate_backward(grad_out, grad_acc, acc, x, baseline, weights);
    return {gp, gx};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &go = saved[0], &acc = saved[1], &x = saved[2], &a = saved[3],
                     &w = saved[4];
    const auto ct = at::toOpMathType(x.scalar_type());
    const at::Tensor hp = grads[0].to(ct), hx = grads[1].to(ct), goc = go.to(ct);
    const at::Tensor big_h = (steps_column(w.to(ct), x) * hp).sum(0);
    const at::Tensor d_go = (x.to(ct) - a.to(ct)) * big_h + hx * acc.to(ct);
    const at::Tensor d_x = goc * big_h;
    return {d_go.to(go.scalar_type()), big_h.to(acc.scalar_type()),
            (goc * hx).to(acc.scalar_type()), d_x.to(x.scalar_type()),
            d_x.neg().to(a.scalar_type()), at::Tensor()};
  }
};

void check_ig_accumulate_devices(const at::Tensor& path_grads, const at::Tensor& x,
                                 const std::optional<at::Tensor>& baseline) {
  check_same_device(kOp, "path_grads", path_grads, "x", x);
  if (baseline.has_value()) check_same_device(kOp, "baseline", *baseline, "x", x);
}

// (out, acc) through IgAccumulateFunction, the defaults filled in as tensors.
variable_list ig_accumulate_differentiable(const at::Tensor& path_grads, const at::Tensor& x,
                                           const std::optional<at::Tensor>& baseline,
                                           const std::optional<at::Tensor>& weights) {
  const auto options = x.options().dtype(at::toOpMathType(x.scalar_type()));
  const c10::SymInt steps = path_grads.sym_size(0);
  const at::Tensor w =
      weights.has_value() ? *weights : at::ones_symint({steps}, options).div(c10::Scalar(steps));
  const at::Tensor a = baseline.has_value() ? *baseline : at::zeros_like(x);
  return IgAccumulateFunction::apply(path_grads, x, a, w);
}

// Devices first: a mixed CPU/meta call would otherwise reach the Meta kernel. (The rest is
// checked by the device kernels and the fake kernel; sizes may be symbolic here.)
at::Tensor ig_accumulate_autograd(const at::Tensor& path_grads, const at::Tensor& x,
                                  const std::optional<at::Tensor>& baseline,
                                  const std::optional<at::Tensor>& weights) {
  check_ig_accumulate_devices(path_grads, x, baseline);
  if (torch::autograd::compute_requires_grad(path_grads, x, baseline)) {
    return ig_accumulate_differentiable(path_grads, x, baseline, weights)[0];
  }
  at::AutoDispatchBelowADInplaceOrView guard;
  return call_ig_accumulate(path_grads, x, baseline, weights);
}

std::tuple<at::Tensor, at::Tensor> ig_accumulate_with_acc_autograd(
    const at::Tensor& path_grads, const at::Tensor& x, const std::optional<at::Tensor>& baseline,
    const std::optional<at::Tensor>& weights) {
  check_ig_accumulate_devices(path_grads, x, baseline);
  if (torch::autograd::compute_requires_grad(path_grads, x, baseline)) {
    auto r = ig_accumulate_differentiable(path_grads, x, baseline, weights);
    return {r[0], r[1]};
  }
  at::AutoDispatchBelowADInplaceOrView guard;
  return call_ig_accumulate_with_acc(path_grads, x, baseline, weights);
}

std::tuple<at::Tensor, at::Tensor> ig_accumulate_backward_autograd(
    const at::Tensor& grad_out, const at::Tensor& grad_acc, const at::Tensor& acc,
    const at::Tensor& x, const at::Tensor& baseline, const at::Tensor& weights) {
  const std::pair<const char*, const at::Tensor*> named[] = {
      {"grad_out", &grad_out}, {"grad_acc", &grad_acc}, {"acc", &acc}, {"baseline", &baseline}};
  for (const auto& [name, t] : named) check_same_device(kBackwardOp, name, *t, "x", x);
  if (torch::autograd::compute_requires_grad(grad_out, grad_acc, acc, x, baseline)) {
    auto r = IgAccumulateBackwardFunction::apply(grad_out, grad_acc, acc, x, baseline, weights);
    return {r[0], r[1]};
  }
  at::AutoDispatchBelowADInplaceOrView guard;
  return call_ig_accumulate_backward(grad_out, grad_acc, acc, x, baseline, weights);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(robustops, m) {
  m.set_python_module("robustops.ops.ig_accumulate");
  // out = (x - baseline) * acc, acc = sum_s weights[s] path_grads[s]; baseline None: zeros,
  // weights None: 1/S each. _with_acc also returns acc (what autograd saves for backward).
  m.def("ig_accumulate(Tensor path_grads, Tensor x, Tensor? baseline, Tensor? weights) -> "
        "Tensor");
  m.def("ig_accumulate_with_acc(Tensor path_grads, Tensor x, Tensor? baseline, "
        "Tensor? weights) -> (Tensor, Tensor)");
  m.def("ig_accumulate_backward(Tensor grad_out, Tensor grad_acc, Tensor acc, Tensor x, "
        "Tensor baseline, Tensor weights) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(robustops, Autograd, m) {
  m.impl("ig_accumulate", &ig_accumulate_autograd);
  m.impl("ig_accumulate_with_acc", &ig_accumulate_with_acc_autograd);
  m.impl("ig_accumulate_backward", &ig_accumulate_backward_autograd);
}

}  // namespace robustops
