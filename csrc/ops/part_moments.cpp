// part_moments: the ops' schemas, argument checks, layout handling shared by the CPU and
// CUDA kernels, and the autograd kernel. The kernels: csrc/cpu/part_moments.cpp,
// csrc/cuda/part_moments.cu (math in kernels/part_moments.h); the fake kernels and the
// plain-PyTorch reference: robustops/ops/part_moments.py.
//
// Autograd: one path, a torch::autograd::Function whose forward saves the logits, the
// moments and (when the caller asked for it: the public function does whenever a backward
// will run) the channel softmax with save_for_backward, and whose backward is the
// robustops::part_moments_backward op reading them. Saved tensors are therefore visible
// to torch.autograd.graph.saved_tensors_hooks (offloading), work under activation
// checkpointing, and a retained graph can be differentiated again.
//
// The explicit in-place backward: when the node is the softmax's only owner (the op
// then returns an empty third output instead of the buffer, so no caller can hold it,
// and no saved-tensor hooks were active to keep a reference) and the graph is not
// retained (the engine frees the saved tensors right after this backward), the
// backward is robustops::part_moments_backward_inplace, writing dL/dlogits over the
// saved softmax: no fresh (B, K+1, H, W) buffer, the write lands on memory the backward
// has just read (bbox, (32, 11, 64, 64): see docs/RESULTS.md). Any other case (retain_graph,
// create_graph, hooks) takes the out-of-place part_moments_backward.
#include <ATen/ATen.h>
#include <ATen/SavedTensorHooks.h>
#include <torch/autograd.h>
#include <torch/csrc/autograd/graph_task.h>
#include <torch/library.h>

#include "ops/arg_checks.h"
#include "part_moments.h"

namespace robustops {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace {

constexpr const char* kOp = "part_moments";
constexpr const char* kBackwardOp = "part_moments_backward";
constexpr const char* kInplaceOp = "part_moments_backward_inplace";
constexpr int64_t kFeatures = 5;  // kPmFeatures
constexpr int64_t kMoments = 6;   // kPmMoments

at::ScalarType opmath(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

// Every check of the logits (robustops/ops/part_moments.py's _validate, same messages).
void check_logits(const at::Tensor& logits) {
  const auto t = logits.scalar_type();
  TORCH_CHECK_VALUE(t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16,
                    kOp, ": logits must be float32, float64, float16 or bfloat16, got ",
                    py_dtype(t));
  TORCH_CHECK_VALUE(logits.dim() == 4, kOp,
                    ": logits must be 4-D (B, K+1, H, W) part logits, got shape ",
                    py_shape(logits));
  TORCH_CHECK_VALUE(logits.size(1) >= 2, kOp,
                    ": logits need at least 2 channels (background + one part), got ",
                    logits.size(1));
  TORCH_CHECK_VALUE(logits.size(2) > 0 && logits.size(3) > 0, kOp,
                    ": logits need at least one pixel, got shape ", py_shape(logits));
}

// The backward ops' other operands: grad (B, K, 5) and stats (B, 6K + 1) floating, and
// the softmax (empty, or the forward's (B, K+1, H, W) in the compute type; in place: a
// contiguous tensor of logits' dtype), all on logits' device.
void check_backward_args(const char* op, const at::Tensor& grad, const at::Tensor& logits,
                         const at::Tensor& stats, const at::Tensor& softmax, bool in_place) {
  check_logits(logits);
  const int64_t b = logits.size(0), k = logits.size(1) - 1;
  check_same_device(op, "grad", grad, "logits", logits);
  check_same_device(op, "stats", stats, "logits", logits);
  check_same_device(op, "softmax", softmax, "logits", logits);
  TORCH_CHECK_VALUE(grad.is_floating_point() && grad.dim() == 3 && grad.size(0) == b &&
                        grad.size(1) == k && grad.size(2) == kFeatures,
                    op, ": grad must be a floating (B, K, 5) = ", py_shape({b, k, kFeatures}),
                    " tensor (the gradient of the features), got ", py_shape(grad), " ",
                    py_dtype(grad));
  TORCH_CHECK_VALUE(stats.is_floating_point() && stats.dim() == 2 && stats.size(0) == b &&
                        stats.size(1) == kMoments * k + 1,
                    op, ": stats must be the forward's (B, 6K+1) = ",
                    py_shape({b, kMoments * k + 1}), " moments, got ", py_shape(stats), " ",
                    py_dtype(stats));
  if (in_place) {
    TORCH_CHECK_VALUE(softmax.sizes() == logits.sizes() &&
                          softmax.scalar_type() == logits.scalar_type() &&
                          softmax.is_contiguous(),
                      op, ": softmax must be a contiguous ", py_shape(logits), " ",
                      py_dtype(logits), " tensor, got ", py_shape(softmax), " ",
                      py_dtype(softmax));
  } else if (softmax.numel() > 0) {
    const auto ct = opmath(logits.scalar_type());
    TORCH_CHECK_VALUE(softmax.sizes() == logits.sizes() && softmax.scalar_type() == ct, op,
                      ": softmax must be empty or ", py_shape(logits), " ", py_dtype(ct),
                      " (the forward's), got ", py_shape(softmax), " ", py_dtype(softmax));
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> part_moments_into(const at::Tensor& logits,
                                                                 bool weighted,
                                                                 bool save_softmax,
                                                                 PartMomentsKernel kernel) {
  check_logits(logits);
  const at::Tensor m = logits.contiguous();
  const int64_t b = m.size(0), k = m.size(1) - 1;
  at::Tensor features = at::empty({b, k, kFeatures}, m.options());
  at::Tensor stats = at::empty({b, kMoments * k + 1}, m.options().dtype(at::kDouble));
  const auto soft_opts = m.options().dtype(opmath(m.scalar_type()));
  at::Tensor softmax = save_softmax ? at::empty(m.sizes(), soft_opts) : at::empty({0}, soft_opts);
  if (b > 0) kernel(features, stats, softmax, m, weighted);
  return {features, stats, softmax};
}

at::Tensor part_moments_backward_into(const at::Tensor& grad, const at::Tensor& logits,
                                      const at::Tensor& stats, const at::Tensor& softmax,
                                      bool weighted, bool in_place,
                                      PartMomentsBackwardKernel kernel) {
  check_backward_args(in_place ? kInplaceOp : kBackwardOp, grad, logits, stats, softmax,
                      in_place);
  const bool saved = softmax.numel() > 0;
  // bbox mode with a saved softmax never reads the logits: no copy of a strided input.
  at::Tensor m = saved && !weighted ? logits : logits.contiguous();
  at::Tensor out = in_place ? softmax : at::empty(logits.sizes(), logits.options());
  if (logits.size(0) == 0) return out;
  // The gradient overwrites the softmax: the logits it reads must not be that memory.
  if (in_place && weighted && m.storage().is_alias_of(out.storage())) m = m.clone();
  const at::Tensor g = grad.to(at::kDouble).contiguous();
  const at::Tensor st = stats.to(at::kDouble).contiguous();
  const at::Tensor sm = softmax.contiguous();
  kernel(out, g, m, st, sm, weighted);
  return out;
}

namespace {

// ------------------------------------------------------------------------ autograd

std::tuple<at::Tensor, at::Tensor, at::Tensor> call_part_moments(const at::Tensor& logits,
                                                                  bool weighted,
                                                                  bool save_softmax) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("robustops::part_moments", "")
                       .typed<decltype(call_part_moments)>();
  return op.call(logits, weighted, save_softmax);
}

at::Tensor call_part_moments_backward(const at::Tensor& grad, const at::Tensor& logits,
                                      const at::Tensor& stats, const at::Tensor& softmax,
                                      bool weighted) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("robustops::part_moments_backward", "")
                       .typed<decltype(call_part_moments_backward)>();
  return op.call(grad, logits, stats, softmax, weighted);
}

void call_part_moments_backward_inplace(const at::Tensor& grad, const at::Tensor& logits,
                                        const at::Tensor& stats, at::Tensor& softmax,
                                        bool weighted) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("robustops::part_moments_backward_inplace", "")
                       .typed<decltype(call_part_moments_backward_inplace)>();
  op.call(grad, logits, stats, softmax, weighted);
}

class PartMomentsFunction : public torch::autograd::Function<PartMomentsFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& logits, bool weighted,
                               bool save_softmax) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [features, stats, softmax] = call_part_moments(logits, weighted, save_softmax);
    // The softmax is empty unless the caller asked for it; the backward then recomputes it.
    ctx->save_for_backward({logits, stats, softmax});
    ctx->saved_data["weighted"] = weighted;
    // The node keeps the softmax to itself unless saved-tensor hooks are active (a pack
    // hook may keep a reference the in-place backward would overwrite).
    // (Half / bfloat16 logits keep a float32 softmax, which cannot hold their gradient.)
    // (save_softmax, not numel(): sizes may be symbolic while torch.compile traces.)
    const bool owned = save_softmax && softmax.scalar_type() == logits.scalar_type() &&
                       at::SavedTensorDefaultHooks::get_tls_state().stack.empty();
    ctx->saved_data["owns_softmax"] = owned;
    at::Tensor softmax_out = owned ? at::empty({0}, softmax.options()) : softmax;
    ctx->mark_non_differentiable({stats, softmax_out});
    // Only the features are differentiable: no zero-filled (B, K+1, H, W) "gradient" of
    // the softmax output per backward.
    ctx->set_materialize_grads(false);
    return {features, stats, softmax_out};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const at::Tensor& grad = grad_outputs[0];
    if (!grad.defined()) return {at::Tensor(), at::Tensor(), at::Tensor()};
    const auto saved = ctx->get_saved_variables();
    const bool weighted = ctx->saved_data["weighted"].toBool();
    if (ctx->saved_data["owns_softmax"].toBool() &&
        !torch::autograd::get_current_graph_task_keep_graph()) {
      at::Tensor softmax = saved[2];  // freed by the engine after this call: reuse it
      call_part_moments_backward_inplace(grad, saved[0], saved[1], softmax, weighted);
      return {softmax, at::Tensor(), at::Tensor()};
    }
    return {call_part_moments_backward(grad, saved[0], saved[1], saved[2], weighted),
            at::Tensor(), at::Tensor()};
  }
};

std::tuple<at::Tensor, at::Tensor, at::Tensor> part_moments_autograd(const at::Tensor& logits,
                                                                     bool weighted,
                                                                     bool save_softmax) {
  if (at::GradMode::is_enabled() && logits.requires_grad()) {
    auto out = PartMomentsFunction::apply(logits, weighted, save_softmax);
    return {out[0], out[1], out[2]};
  }
  at::AutoDispatchBelowADInplaceOrView guard;
  return call_part_moments(logits, weighted, save_softmax);
}

void part_moments_backward_inplace_autograd(const at::Tensor& grad, const at::Tensor& logits,
                                            const at::Tensor& stats, at::Tensor& softmax,
                                            bool weighted) {
  // Devices first (sizes may be symbolic here; the device kernels check the rest).
  check_same_device(kInplaceOp, "grad", grad, "logits", logits);
  check_same_device(kInplaceOp, "stats", stats, "logits", logits);
  check_same_device(kInplaceOp, "softmax", softmax, "logits", logits);
  TORCH_CHECK(!(at::GradMode::is_enabled() && softmax.requires_grad()), kInplaceOp,
              ": softmax requires grad, and the op (not differentiable) overwrites it; pass "
              "the forward's saved softmax, or use part_moments_backward");
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("robustops::part_moments_backward_inplace", "")
                         .typed<decltype(part_moments_backward_inplace_autograd)>();
    op.call(grad, logits, stats, softmax, weighted);
  }
  torch::autograd::impl::bump_version(softmax);  // as the dispatcher does for x.add_()
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(robustops, m) {
  m.set_python_module("robustops.ops.part_moments");
  m.def("part_moments(Tensor logits, bool weighted, bool save_softmax=False) -> "
        "(Tensor, Tensor, Tensor)");
  m.def("part_moments_backward(Tensor grad, Tensor logits, Tensor stats, Tensor softmax, "
        "bool weighted) -> Tensor");
  m.def("part_moments_backward_inplace(Tensor grad, Tensor logits, Tensor stats, "
        "Tensor(a!) softmax, bool weighted) -> ()");
}

TORCH_LIBRARY_IMPL(robustops, Autograd, m) {
  m.impl("part_moments", &part_moments_autograd);
  m.impl("part_moments_backward_inplace", &part_moments_backward_inplace_autograd);
}

}  // namespace robustops
