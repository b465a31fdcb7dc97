// v1_response: the op's schema, argument checks, the layout handling shared by the CPU
// and CUDA kernels, and the autograd kernel (whose backward is the op
// v1_response_backward, with its own CPU and CUDA kernels: it recomputes the noise from
// the counter, so only q0, q1 and index are saved). The kernels:
// csrc/cpu/v1_response.cpp, csrc/cuda/v1_response.cu (math in kernels/v1_response.h);
// the fake kernels and the plain-PyTorch reference: robustops/ops/v1_response.py.
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <cmath>

#include <kernels/counter_rng.h>

#include "ops/arg_checks.h"
#include "v1_response.h"

namespace robustops {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace {

// Counter stream of the noise (robustops/ops/v1_response.py's V1_NOISE_STREAM): the
// normals draw u1 from stream 2 * kNoiseStream and u2 from 2 * kNoiseStream + 1.
constexpr uint32_t kNoiseStream = 0x5631;

bool float_type(const at::Tensor& t) {
  const auto d = t.scalar_type();
  return d == at::kFloat || d == at::kDouble || d == at::kHalf || d == at::kBFloat16;
}

void check_finite(const char* name, double v) {
  TORCH_CHECK_VALUE(std::isfinite(v), "v1_response: ", name,
                    " must be a finite real number, got ", py_float(v));
}

void check_devices(const at::Tensor& q0, const at::Tensor& q1,
                   const std::optional<at::Tensor>& index) {
  TORCH_CHECK_VALUE(q1.device() == q0.device(), "v1_response: q1 is on ", py_device(q1),
                    " but q0 is on ", py_device(q0));
  if (index.has_value()) {
    TORCH_CHECK_VALUE(index->device() == q0.device(), "v1_response: index is on ",
                      py_device(*index), " but q0 is on ", py_device(q0),
                      "; move it with index.to(q0.device)");
  }
}

// The checks of robustops/ops/v1_response.py's _validate_op, in its order.
void check_args(const at::Tensor& q0, const at::Tensor& q1, const std::optional<at::Tensor>& index,
                double k_exc, double noise_scale, double noise_level) {
  const std::pair<const char*, const at::Tensor*> named[] = {{"q0", &q0}, {"q1", &q1}};
  for (const auto& [name, t] : named) {
    TORCH_CHECK_VALUE(t->dim() == 4, "v1_response: ", name,
                      " must be 4-D (B, C, H, W), got shape ", py_shape(*t));
    TORCH_CHECK_VALUE(float_type(*t), "v1_response: ", name,
                      " must be float32, float64, float16 or bfloat16, got ", py_dtype(*t));
  }
  TORCH_CHECK_VALUE(q1.scalar_type() == q0.scalar_type(), "v1_response: q1 has dtype ",
                    py_dtype(q1), " but q0 has ", py_dtype(q0), "; they must match");
  check_devices(q0, q1, std::nullopt);
  TORCH_CHECK_VALUE(q1.size(0) == q0.size(0) && q1.size(2) == q0.size(2) &&
                        q1.size(3) == q0.size(3) && q1.size(1) <= q0.size(1),
                    "v1_response: q1 must be (B, Cc, H, W) with q0's B, H, W and Cc <= q0's "
                    "channels (q0 = simple then complex channels); got q0 ", py_shape(q0),
                    ", q1 ", py_shape(q1));
  check_finite("k_exc", k_exc);
  check_finite("noise_scale", noise_scale);
  TORCH_CHECK_VALUE(noise_scale > 0, "v1_response: noise_scale must be > 0, got ",
                    py_float(noise_scale));
  check_finite("noise_level", noise_level);
  if (index.has_value()) {
    TORCH_CHECK_VALUE(index->scalar_type() == at::kLong && index->dim() == 1 &&
                          index->size(0) == q0.size(0),
                      "v1_response: index must be an int64 tensor of shape (", q0.size(0),
                      ",) (one global sample index per sample), got ", py_shape(*index), " ",
                      py_dtype(*index));
    check_devices(q0, q1, index);
  }
}

V1Params params(const at::Tensor& q0, const at::Tensor& q1, double k_exc, double noise_scale,
                double noise_level, bool noise, int64_t seed) {
  const auto s = static_cast<uint64_t>(seed);
  return V1Params{q0.size(1) - q1.size(1),
                  k_exc,
                  noise_scale,
                  noise_level,
                  noise,
                  noise ? kernels::rng_stream_base(s, 2 * kNoiseStream) : 0u,
                  noise ? kernels::rng_stream_base(s, 2 * kNoiseStream + 1) : 0u,
                  false};
}

// 0: every tensor contiguous NCHW; 1: every tensor channels_last; -1: neither.
int layout_of(std::initializer_list<const at::Tensor*> ts) {
  bool all = true;
  for (const at::Tensor* t : ts) all = all && t->is_contiguous();
  if (all) return 0;
  for (const at::Tensor* t : ts) {
    if (!t->is_contiguous(at::MemoryFormat::ChannelsLast)) return -1;
  }
  return 1;
}

at::Tensor noise_index(const std::optional<at::Tensor>& index, bool noise) {
  return noise && index.has_value() ? index->contiguous() : at::Tensor();
}

// `t` itself when contiguous, else a new contiguous tensor of its shape.
at::Tensor contiguous_target(const at::Tensor& t) {
  return t.is_contiguous() ? t : at::empty(t.sizes(), t.options());
}

}  // namespace

at::Tensor v1_response_run(const at::Tensor& q0, const at::Tensor& q1,
                           const std::optional<at::Tensor>& index, double k_exc,
                           double noise_scale, double noise_level, bool noise, int64_t seed,
                           V1ResponseKernel kernel) {
  check_args(q0, q1, index, k_exc, noise_scale, noise_level);
  at::Tensor out = at::empty_like(q0);  // q0's layout (what the fake kernel returns)
  if (out.numel() == 0) return out;
  V1Params p = params(q0, q1, k_exc, noise_scale, noise_level, noise, seed);
  const at::Tensor idx = noise_index(index, noise);
  const int layout = layout_of({&out, &q0, &q1});
  if (layout >= 0) {
    p.channels_last = layout == 1;
    kernel(out, q0, q1, idx, p);
    return out;
  }
  // Neither layout throughout: the kernels walk dense NCHW.
  at::Tensor target = contiguous_target(out);
  kernel(target, q0.contiguous(), q1.contiguous(), idx, p);
  if (!target.is_same(out)) out.copy_(target);
  return out;
}

std::tuple<at::Tensor, at::Tensor> v1_response_backward_run(
    const at::Tensor& grad_out, const at::Tensor& q0, const at::Tensor& q1,
    const std::optional<at::Tensor>& index, double k_exc, double noise_scale,
    double noise_level, bool noise, int64_t seed, V1ResponseBackwardKernel kernel) {
  check_args(q0, q1, index, k_exc, noise_scale, noise_level);
  TORCH_CHECK_VALUE(grad_out.sizes() == q0.sizes(), "v1_response_backward: grad_out has shape ",
                    py_shape(grad_out), " but q0 has ", py_shape(q0), "; they must match");
  TORCH_CHECK_VALUE(grad_out.device() == q0.device(), "v1_response_backward: grad_out is on ",
                    py_device(grad_out), " but q0 is on ", py_device(q0));
  TORCH_CHECK_TYPE(grad_out.is_floating_point(), "v1_response_backward: grad_out has dtype ",
                   py_dtype(grad_out), "; it must be floating point");
  at::Tensor gq0 = at::empty_like(q0), gq1 = at::empty_like(q1);
  if (q0.numel() == 0) return {gq0, gq1};
  V1Params p = params(q0, q1, k_exc, noise_scale, noise_level, noise, seed);
  const at::Tensor idx = noise_index(index, noise);
  // Autograd often hands over expanded or differently strided gradients.
  at::Tensor go = grad_out;
  if (go.scalar_type() != q0.scalar_type() || go.strides() != q0.strides()) {
    go = at::empty_like(q0);
    go.copy_(grad_out);
  }
  const int layout = layout_of({&gq0, &gq1, &go, &q0, &q1});
  if (layout >= 0) {
    p.channels_last = layout == 1;
    kernel(gq0, gq1, go, q0, q1, idx, p);
    return {gq0, gq1};
  }
  at::Tensor t0 = contiguous_target(gq0), t1 = contiguous_target(gq1);
  kernel(t0, t1, go.contiguous(), q0.contiguous(), q1.contiguous(), idx, p);
  if (!t0.is_same(gq0)) gq0.copy_(t0);
  if (!t1.is_same(gq1)) gq1.copy_(t1);
  return {gq0, gq1};
}

namespace {

// ------------------------------------------------------------------------ autograd

at::Tensor call_v1_response(const at::Tensor& q0, const at::Tensor& q1,
                            const std::optional<at::Tensor>& index, double k_exc,
                            double noise_scale, double noise_level, bool noise, int64_t seed) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("robustops::v1_response", "")
                       .typed<decltype(call_v1_response)>();
  return op.call(q0, q1, index, k_exc, noise_scale, noise_level, noise, seed);
}

std::tuple<at::Tensor, at::Tensor> call_v1_response_backward(
    const at::Tensor& grad_out, const at::Tensor& q0, const at::Tensor& q1,
    const std::optional<at::Tensor>& index, double k_exc, double noise_scale,
    double noise_level, bool noise, int64_t seed) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("robustops::v1_response_backward", "")
                       .typed<decltype(call_v1_response_backward)>();
  return op.call(grad_out, q0, q1, index, k_exc, noise_scale, noise_level, noise, seed);
}

class V1ResponseFunction : public torch::autograd::Function<V1ResponseFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& q0, const at::Tensor& q1,
                            const std::optional<at::Tensor>& index, double k_exc,
                            double noise_scale, double noise_level, bool noise, int64_t seed) {
    at::AutoDispatchBelowADInplaceOrView guard;
    // Only the inputs: the backward recomputes the noise from the counter.
    ctx->save_for_backward({q0, q1, or_undefined(index)});
    ctx->saved_data["k_exc"] = k_exc;
    ctx->saved_data["noise_scale"] = noise_scale;
    ctx->saved_data["noise_level"] = noise_level;
    ctx->saved_data["noise"] = noise;
    ctx->saved_data["seed"] = seed;
    return call_v1_response(q0, q1, index, k_exc, noise_scale, noise_level, noise, seed);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto& d = ctx->saved_data;
    auto [gq0, gq1] = call_v1_response_backward(
        grad_outputs[0], saved[0], saved[1],
        saved[2].defined() ? std::optional<at::Tensor>(saved[2]) : std::nullopt,
        d.at("k_exc").toDouble(), d.at("noise_scale").toDouble(),
        d.at("noise_level").toDouble(), d.at("noise").toBool(), d.at("seed").toInt());
    // index and the scalars get no gradient.
    return {gq0, gq1, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor()};
  }
};

at::Tensor v1_response_autograd(const at::Tensor& q0, const at::Tensor& q1,
                                const std::optional<at::Tensor>& index, double k_exc,
                                double noise_scale, double noise_level, bool noise,
                                int64_t seed) {
  // Devices first: a mixed CPU/meta call would otherwise reach the Meta kernel. (The
  // rest is checked by the device kernels and the fake kernel; sizes may be symbolic here.)
  check_devices(q0, q1, index);
  if (at::GradMode::is_enabled() && (q0.requires_grad() || q1.requires_grad())) {
    return V1ResponseFunction::apply(q0, q1, index, k_exc, noise_scale, noise_level, noise,
                                     seed);
  }
  at::AutoDispatchBelowADInplaceOrView guard;
  return call_v1_response(q0, q1, index, k_exc, noise_scale, noise_level, noise, seed);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(robustops, m) {
  m.set_python_module("robustops.ops.v1_response");
  m.def("v1_response(Tensor q0, Tensor q1, Tensor? index, float k_exc, float noise_scale, "
        "float noise_level, bool noise, int seed) -> Tensor");
  m.def("v1_response_backward(Tensor grad_out, Tensor q0, Tensor q1, Tensor? index, "
        "float k_exc, float noise_scale, float noise_level, bool noise, int seed) -> "
        "(Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(robustops, Autograd, m) {
  m.impl("v1_response", &v1_response_autograd);
}

}  // namespace robustops
