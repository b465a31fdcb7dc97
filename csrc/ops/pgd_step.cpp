// pgd_step: the op's schema, argument checks, layout handling shared by the CPU and
// CUDA kernels, the backward op (an ATen composition, any device) and the autograd
// kernels. The kernels: csrc/cpu/pgd_step.cpp, csrc/cuda/pgd_step.cu (math in
// kernels/pgd_step.h); the fake kernel and the plain-PyTorch reference:
// robustops/ops/pgd_step.py.
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include "ops/arg_checks.h"
#include "pgd_step.h"

namespace robustops {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace {

constexpr const char* kOp = "pgd_step";

// Dense with each sample one contiguous block (contiguous or channels_last).
bool sample_major_dense(const at::Tensor& t) {
  if (!t.is_non_overlapping_and_dense()) return false;
  return t.dim() == 0 || t.size(0) <= 1 || t.stride(0) * t.size(0) == t.numel();
}

bool overlaps(const at::Tensor& a, const at::Tensor& b) {
  const char* a0 = static_cast<const char*>(a.const_data_ptr());
  const char* b0 = static_cast<const char*>(b.const_data_ptr());
  const char* a1 = a0 + a.numel() * a.element_size();
  const char* b1 = b0 + b.numel() * b.element_size();
  return a0 < b1 && b0 < a1;
}

// The kernels read all four operands with one linear index: same strides, dtype and
// device, and out (which may be x) overlapping neither x_nat nor grad.
bool kernel_layout_ok(const at::Tensor& out, const at::Tensor& x, const at::Tensor& x_nat,
                      const at::Tensor& grad) {
  if (!sample_major_dense(out)) return false;
  for (const at::Tensor* t : {&x, &x_nat, &grad}) {
    if (t->strides() != out.strides() || t->scalar_type() != out.scalar_type()) return false;
  }
  return !overlaps(out, x_nat) && !overlaps(out, grad) &&
         (x.const_data_ptr() == out.const_data_ptr() || !overlaps(out, x));
}

// `t` with `ref`'s strides and dtype, copying only when they differ.
at::Tensor like(const at::Tensor& t, const at::Tensor& ref) {
  if (t.scalar_type() == ref.scalar_type() && t.strides() == ref.strides()) return t;
  at::Tensor out = at::empty_like(ref);
  out.copy_(t);
  return out;
}

bool shares_storage(const at::Tensor& a, const at::Tensor& b) {
  return a.storage().is_alias_of(b.storage());
}

at::ScalarType opmath(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

void check_per_sample(const std::optional<at::Tensor>& t, const char* name, const at::Tensor& x) {
  if (!t.has_value()) return;
  TORCH_CHECK_TYPE(t->is_floating_point(), kOp, ": ", name,
                   " must be a float or a floating (B,) tensor, got a ", py_dtype(*t),
                   " tensor");
  TORCH_CHECK_VALUE(t->dim() == 0 || (t->dim() == 1 && t->size(0) == x.size(0)), kOp,
                    ": per-sample ", name, " must have shape (", x.size(0),
                    ",) to match the batch, got ", py_shape(*t));
  check_same_device(kOp, name, *t, "x", x);
}

// (B,) contiguous in the compute type, its values checked: read on the CPU (free), an
// asynchronous assert on a GPU (no host sync).
at::Tensor per_sample_values(const std::optional<at::Tensor>& t, const char* name,
                             const at::Tensor& x) {
  if (!t.has_value()) return at::Tensor();
  at::Tensor v = t->to(opmath(x.scalar_type()));
  if (v.dim() == 0) v = v.expand({x.size(0)});
  v = v.contiguous();
  const at::Tensor ok = at::isfinite(v).all().logical_and(v.ge(0).all());
  if (v.is_cpu()) {
    TORCH_CHECK_VALUE(ok.item<bool>(), kOp, ": per-sample ", name,
                      " must be finite and >= 0, got min ", v.min().item<double>(),
                      " (NaN present: ", at::isnan(v).any().item<bool>() ? "True" : "False",
                      ")");
  } else {
    at::_assert_async(ok, "pgd_step: per-sample eps/alpha must be finite and >= 0");
  }
  return v;
}

}  // namespace

bool pgd_step_l2(c10::string_view norm) {
  TORCH_CHECK_VALUE(norm == "linf" || norm == "l2", kOp,
                    ": norm must be 'linf' or 'l2' (or inf / 2), got '", std::string(norm),
                    "'");
  return norm == "l2";
}

void check_pgd_step_args(const at::Tensor& x, const at::Tensor& x_nat, const at::Tensor& grad,
                         double eps, double alpha, const std::optional<at::Tensor>& eps_t,
                         const std::optional<at::Tensor>& alpha_t, double lo, double hi,
                         c10::string_view norm) {
  const std::pair<const char*, const at::Tensor*> named[] = {
      {"x", &x}, {"x_nat", &x_nat}, {"grad", &grad}};
  for (const auto& [name, t] : named) {
    TORCH_CHECK_TYPE(t->is_floating_point(), kOp, ": ", name, " has dtype ", py_dtype(*t),
                     "; images must be floating point in [lo, hi] (e.g. x.float() / 255 for "
                     "uint8 images)");
  }
  TORCH_CHECK_VALUE(x.dim() >= 1,
                    "pgd_step: x must have a leading batch dimension, got a 0-d tensor");
  check_same_shape(kOp, "x_nat", x_nat, "x", x);
  check_same_device(kOp, "x_nat", x_nat, "x", x);
  check_same_shape(kOp, "grad", grad, "x", x);
  check_same_device(kOp, "grad", grad, "x", x);
  TORCH_CHECK_TYPE(x_nat.scalar_type() == x.scalar_type(), kOp, ": x_nat has dtype ",
                   py_dtype(x_nat), " but x has ", py_dtype(x),
                   "; they must match (the gradient may differ, it is cast)");
  TORCH_CHECK_VALUE(x.size(0) > 0 && x.numel() > 0, kOp, ": empty batch (x has shape ",
                    py_shape(x), "); skip the step when there is nothing to attack");
  pgd_step_l2(norm);
  TORCH_CHECK_VALUE(std::isfinite(lo) && std::isfinite(hi) && lo <= hi, kOp,
                    ": need finite lo <= hi, got lo=", lo, ", hi=", hi);
  check_non_negative(kOp, "eps", eps);
  check_non_negative(kOp, "alpha", alpha);
  check_per_sample(eps_t, "eps", x);
  check_per_sample(alpha_t, "alpha", x);
}

void pgd_step_into(at::Tensor& out, const at::Tensor& x, const at::Tensor& x_nat,
                   const at::Tensor& grad, double eps, double alpha,
                   const std::optional<at::Tensor>& eps_t,
                   const std::optional<at::Tensor>& alpha_t, double lo, double hi,
                   c10::string_view norm, PgdStepKernel kernel) {
  check_pgd_step_args(x, x_nat, grad, eps, alpha, eps_t, alpha_t, lo, hi, norm);
  const bool l2 = norm == "l2";
  const at::Tensor e = per_sample_values(eps_t, "eps", x);
  const at::Tensor a = per_sample_values(alpha_t, "alpha", x);
  bool finite;
  if (kernel_layout_ok(out, x, x_nat, grad)) {
    finite = kernel(out, x, x_nat, grad, eps, alpha, e, a, lo, hi, l2);
  } else {
    // Kernels walk memory linearly, one sample block at a time: give them dense,
    // identically strided operands, and never let x_nat/grad share out's memory.
    at::Tensor target = sample_major_dense(out) ? out : at::empty_like(out, at::MemoryFormat::Contiguous);
    at::Tensor xs = like(x, target), xns = like(x_nat, target), gs = like(grad, target);
    if (shares_storage(xns, target)) xns = xns.clone();
    if (shares_storage(gs, target)) gs = gs.clone();
    if (!xs.is_same(target) && shares_storage(xs, target)) xs = xs.clone();
    finite = kernel(target, xs, xns, gs, eps, alpha, e, a, lo, hi, l2);
    if (!target.is_same(out)) out.copy_(target);
  }
  TORCH_CHECK_VALUE(finite,
                    "pgd_step: x or x_nat contains NaN or Inf (the result is not finite). "
                    "Check the images given to the attack (and lo/hi, eps, alpha); NaN "
                    "gradients are fine, they leave pixels in place.");
}

namespace {

// ------------------------------------------------------------------------ backward op

// (B, 1, ..., 1) per-sample values from a float or a (B,) / 0-d tensor.
at::Tensor per_sample_column(double v, const std::optional<at::Tensor>& t, const at::Tensor& x,
                             at::ScalarType ct) {
  if (!t.has_value()) return at::scalar_tensor(v, x.options().dtype(ct));
  std::vector<int64_t> shape(x.dim(), 1);
  shape[0] = x.size(0);
  return t->to(ct).expand({x.size(0)}).reshape(shape);
}

at::Tensor row_dot(const at::Tensor& a, const at::Tensor& b) {
  std::vector<int64_t> shape(a.dim(), 1);
  shape[0] = a.size(0);
  return (a * b).flatten(1).sum(1).reshape(shape);
}

at::Tensor row_norm(const at::Tensor& a) {
  std::vector<int64_t> shape(a.dim(), 1);
  shape[0] = a.size(0);
  return a.flatten(1).norm(2, 1).reshape(shape);
}

// Analytic (grad_x, grad_x_nat, grad_grad) of pgd_step; ties go to the clamped side.
// The same formulas as _pgd_step_backward_reference in robustops/ops/pgd_step.py.
std::tuple<at::Tensor, at::Tensor, at::Tensor> pgd_step_backward(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& x_nat,
    const at::Tensor& grad, double eps, double alpha, const std::optional<at::Tensor>& eps_t,
    const std::optional<at::Tensor>& alpha_t, double lo, double hi, c10::string_view norm) {
  const bool l2 = pgd_step_l2(norm);
  const auto ct = opmath(x.scalar_type());
  const at::Tensor go = grad_out.to(ct), xc = x.to(ct), xn = x_nat.to(ct), g = grad.to(ct);
  const at::Tensor e = per_sample_column(eps, eps_t, x, ct);
  const at::Tensor a = per_sample_column(alpha, alpha_t, x, ct);
  at::Tensor gx, gxn, gg;
  if (!l2) {
    const at::Tensor v0 = xc + a * at::sign(at::nan_to_num(g, 0.0, 1.0, -1.0));
    const at::Tensor inside = v0.gt(xn - e).logical_and(v0.lt(xn + e));
    const at::Tensor v1 = at::where(inside, v0, at::minimum(at::maximum(v0, xn - e), xn + e));
    const at::Tensor gp = go * v1.gt(lo).logical_and(v1.lt(hi));
    gx = gp * inside;
    gxn = gp - gx;
    gg = at::zeros_like(g);  // sign() has zero derivative
  } else {
    const at::Tensor finite = at::isfinite(g);
    const at::Tensor gf = at::where(finite, g, at::zeros({}, g.options()));
    const at::Tensor g_norm = row_norm(gf);
    const at::Tensor moves = g_norm.gt(0);
    const at::Tensor safe_g = at::where(moves, g_norm, at::ones_like(g_norm));
    const at::Tensor u = gf / safe_g;
    const at::Tensor y = xc + at::where(moves, a, at::zeros_like(a)) * u;
    const at::Tensor d = y - xn;
    const at::Tensor d_norm = row_norm(d);
    const at::Tensor outside = d_norm.gt(e);
    const at::Tensor safe_d = at::where(outside, d_norm, at::ones_like(d_norm));
    const at::Tensor shrink = at::where(outside, e / safe_d, at::ones_like(d_norm));
    const at::Tensor p = xn + shrink * d;
    const at::Tensor gp = go * p.gt(lo).logical_and(p.lt(hi));
    const at::Tensor dhat = d / safe_d;
    gx = at::where(outside, shrink * (gp - row_dot(gp, dhat) * dhat), gp);
    gxn = gp - gx;
    gg = (a / safe_g) * (gx - row_dot(gx, u) * u);
    gg = at::where(moves.logical_and(finite), gg, at::zeros_like(gg));
  }
  return {gx.to(x.scalar_type()).contiguous(), gxn.to(x.scalar_type()).contiguous(),
          gg.to(grad.scalar_type()).contiguous()};
}

// ------------------------------------------------------------------------ autograd

at::Tensor call_pgd_step(const at::Tensor& x, const at::Tensor& x_nat, const at::Tensor& grad,
                         double eps, double alpha, const std::optional<at::Tensor>& eps_t,
                         const std::optional<at::Tensor>& alpha_t, double lo, double hi,
                         c10::string_view norm) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("robustops::pgd_step", "")
                       .typed<decltype(call_pgd_step)>();
  return op.call(x, x_nat, grad, eps, alpha, eps_t, alpha_t, lo, hi, norm);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> call_pgd_step_backward(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& x_nat,
    const at::Tensor& grad, double eps, double alpha, const std::optional<at::Tensor>& eps_t,
    const std::optional<at::Tensor>& alpha_t, double lo, double hi, c10::string_view norm) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("robustops::pgd_step_backward", "")
                       .typed<decltype(call_pgd_step_backward)>();
  return op.call(grad_out, x, x_nat, grad, eps, alpha, eps_t, alpha_t, lo, hi, norm);
}

class PgdStepFunction : public torch::autograd::Function<PgdStepFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& x_nat,
                            const at::Tensor& grad, double eps, double alpha,
                            const std::optional<at::Tensor>& eps_t,
                            const std::optional<at::Tensor>& alpha_t, double lo, double hi,
                            const std::string& norm) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({x, x_nat, grad, or_undefined(eps_t), or_undefined(alpha_t)});
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["alpha"] = alpha;
    ctx->saved_data["lo"] = lo;
    ctx->saved_data["hi"] = hi;
    ctx->saved_data["norm"] = norm;
    return call_pgd_step(x, x_nat, grad, eps, alpha, eps_t, alpha_t, lo, hi, norm);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto opt = [](const at::Tensor& t) {
      return t.defined() ? std::optional<at::Tensor>(t) : std::nullopt;
    };
    auto [gx, gxn, gg] = call_pgd_step_backward(
        grad_outputs[0], saved[0], saved[1], saved[2], ctx->saved_data["eps"].toDouble(),
        ctx->saved_data["alpha"].toDouble(), opt(saved[3]), opt(saved[4]),
        ctx->saved_data["lo"].toDouble(), ctx->saved_data["hi"].toDouble(),
        ctx->saved_data["norm"].toStringRef());
    // eps/alpha (floats or per-sample tensors), lo, hi and norm get no gradient.
    return {gx, gxn, gg, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

void check_pgd_step_devices(const at::Tensor& x, const at::Tensor& x_nat,
                            const at::Tensor& grad) {
  check_same_device(kOp, "x_nat", x_nat, "x", x);
  check_same_device(kOp, "grad", grad, "x", x);
}

bool any_requires_grad(std::initializer_list<const at::Tensor*> ts) {
  for (const at::Tensor* t : ts) {
    if (t->requires_grad()) return true;
  }
  return false;
}

at::Tensor pgd_step_autograd(const at::Tensor& x, const at::Tensor& x_nat,
                             const at::Tensor& grad, double eps, double alpha,
                             const std::optional<at::Tensor>& eps_t,
                             const std::optional<at::Tensor>& alpha_t, double lo, double hi,
                             c10::string_view norm) {
  // Devices first: a mixed CPU/meta call would otherwise reach the Meta kernel. (The
  // rest is checked by the device kernels and the fake kernel; sizes may be symbolic here.)
  check_pgd_step_devices(x, x_nat, grad);
  if (at::GradMode::is_enabled() && any_requires_grad({&x, &x_nat, &grad})) {
    return PgdStepFunction::apply(x, x_nat, grad, eps, alpha, eps_t, alpha_t, lo, hi,
                                  std::string(norm));
  }
  at::AutoDispatchBelowADInplaceOrView guard;
  return call_pgd_step(x, x_nat, grad, eps, alpha, eps_t, alpha_t, lo, hi, norm);
}

void pgd_step_inplace_autograd(at::Tensor& x, const at::Tensor& x_nat, const at::Tensor& grad,
                               double eps, double alpha, const std::optional<at::Tensor>& eps_t,
                               const std::optional<at::Tensor>& alpha_t, double lo, double hi,
                               c10::string_view norm) {
  check_pgd_step_devices(x, x_nat, grad);
  TORCH_CHECK(!(at::GradMode::is_enabled() && x.requires_grad()),
              "pgd_step_: x requires grad, and an in-place step would hide the update from "
              "autograd; run it under torch.no_grad() (as attack loops do) or use the "
              "differentiable out-of-place pgd_step");
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("robustops::pgd_step_", "")
                         .typed<decltype(pgd_step_inplace_autograd)>();
    op.call(x, x_nat, grad, eps, alpha, eps_t, alpha_t, lo, hi, norm);
  }
  torch::autograd::impl::bump_version(x);  // as the dispatcher does for x.add_()
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(robustops, m) {
  m.set_python_module("robustops.ops.pgd_step");
  m.def("pgd_step(Tensor x, Tensor x_nat, Tensor grad, float eps, float alpha, Tensor? eps_t, "
        "Tensor? alpha_t, float lo, float hi, str norm) -> Tensor");
  m.def("pgd_step_(Tensor(a!) x, Tensor x_nat, Tensor grad, float eps, float alpha, "
        "Tensor? eps_t, Tensor? alpha_t, float lo, float hi, str norm) -> ()");
  m.def("pgd_step_backward(Tensor grad_out, Tensor x, Tensor x_nat, Tensor grad, float eps, "
        "float alpha, Tensor? eps_t, Tensor? alpha_t, float lo, float hi, str norm) -> "
        "(Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(robustops, CompositeExplicitAutograd, m) {
  m.impl("pgd_step_backward", &pgd_step_backward);
}

TORCH_LIBRARY_IMPL(robustops, Autograd, m) {
  m.impl("pgd_step", &pgd_step_autograd);
  m.impl("pgd_step_", &pgd_step_inplace_autograd);
}

}  // namespace robustops
