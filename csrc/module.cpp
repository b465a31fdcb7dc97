// robustops._C: the kernel entry points and build_info().
#include <torch/extension.h>

#include <ATen/Parallel.h>
#include <torch/version.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "channel_kmeans.h"
#include "counter_rng.h"
#include "gabor_bank.h"
#include "group_inhibition_mask.h"
#include "group_orthogonality_loss.h"
#include "ig_accumulate.h"
#include "part_moments.h"
#include "pgd_step.h"
#include "pixel_softmax_kl.h"
#include "rank_metrics.h"
#include "sign_matched_product.h"
#include "v1_response.h"

#ifndef ROBUSTOPS_CUDA_ARCHS
#define ROBUSTOPS_CUDA_ARCHS ""
#endif
#ifndef ROBUSTOPS_CUDA_NOTE
#define ROBUSTOPS_CUDA_NOTE "unknown (built without setup.py)"
#endif

#ifdef ROBUSTOPS_WITH_CUDA
#include <cuda_runtime_api.h>  // CUDART_VERSION: the toolkit this was built with
#endif

namespace {

// Undefined tensor for None so the kernels see one type.
at::Tensor or_undefined(const c10::optional<at::Tensor>& t) {
  return t.has_value() ? *t : at::Tensor();
}

// What the C++ kernels need of their tensors (robustops/ops/pgd_step.py makes
// copies when this is false): same strides, dense, one contiguous block per
// sample, same device, and out not overlapping x_nat or grad.
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

bool kernel_layout_ok(const at::Tensor& out, const at::Tensor& x, const at::Tensor& x_nat,
                      const at::Tensor& grad) {
  if (!sample_major_dense(out)) return false;
  for (const at::Tensor* t : {&x, &x_nat, &grad}) {
    if (t->strides() != out.strides() || t->scalar_type() != out.scalar_type() ||
        t->device() != out.device())
      return false;
  }
  return !overlaps(out, x_nat) && !overlaps(out, grad) &&
         (x.const_data_ptr() == out.const_data_ptr() || !overlaps(out, x));
}

// Status codes returned to Python: 0 done, 1 done but the result or x_nat is
// not finite, 2 nothing done because the layout needs copies first.
int pgd_step_entry(at::Tensor out, const at::Tensor& x, const at::Tensor& x_nat,
                   const at::Tensor& grad, double eps, double alpha,
                   const c10::optional<at::Tensor>& eps_t,
                   const c10::optional<at::Tensor>& alpha_t, double lo, double hi, bool l2) {
  if (!kernel_layout_ok(out, x, x_nat, grad)) return 2;
  bool finite = true;
  if (x.is_cuda()) {
#ifdef ROBUSTOPS_WITH_CUDA
    finite = robustops::pgd_step_cuda(out, x, x_nat, grad, eps, alpha, or_undefined(eps_t),
                                      or_undefined(alpha_t), lo, hi, l2);
#else
    TORCH_CHECK(false, "robustops._C was built without CUDA; rebuild with ROBUSTOPS_CUDA=1");
#endif
  } else {
    finite = robustops::pgd_step_cpu(out, x, x_nat, grad, eps, alpha, or_undefined(eps_t),
                                     or_undefined(alpha_t), lo, hi, l2);
  }
  return finite ? 0 : 1;
}

// The common eager call of the in-place step, checked and run in one C++ call:
// CPU, one floating dtype, matching dense tensors, finite eps/alpha >= 0 and a
// finite box. Anything else returns 2 and robustops/ops/pgd_step.py takes its
// general path, which validates with clear messages. 0: done; 1: done but the
// result or x_nat is not finite.
int pgd_step_inplace_checked(at::Tensor x, const at::Tensor& x_nat, const at::Tensor& grad,
                             double eps, double alpha, double lo, double hi, bool l2,
                             bool grad_enabled) {
  const auto dtype = x.scalar_type();
  const bool float_type = dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf ||
                          dtype == at::kBFloat16;
  if (!float_type || !x.device().is_cpu() || x.dim() < 1 || x.numel() == 0 ||
      x.sizes() != x_nat.sizes() || x.sizes() != grad.sizes())
    return 2;
  if (!(std::isfinite(eps) && eps >= 0 && std::isfinite(alpha) && alpha >= 0 &&
        std::isfinite(lo) && std::isfinite(hi) && lo <= hi))
    return 2;
  if (grad_enabled && (x.requires_grad() || x_nat.requires_grad() || grad.requires_grad()))
    return 2;
  if (!kernel_layout_ok(x, x, x_nat, grad)) return 2;
  const bool finite = robustops::pgd_step_cpu(x, x, x_nat, grad, eps, alpha, at::Tensor(),
                                              at::Tensor(), lo, hi, l2);
  // Autograd's in-place bookkeeping, as the dispatcher would do for x.add_().
  x.unsafeGetTensorImpl()->bump_version();
  return finite ? 0 : 1;
}

void counter_rng_entry(at::Tensor out, const at::Tensor& index, int64_t base1, int64_t base2,
                       bool normal) {
  const auto b1 = static_cast<uint32_t>(base1), b2 = static_cast<uint32_t>(base2);
  if (out.is_cuda()) {
#ifdef ROBUSTOPS_WITH_CUDA
    robustops::counter_rng_cuda(out, index, b1, b2, normal);
    return;
#else
    TORCH_CHECK(false, "robustops._C was built without CUDA; rebuild with ROBUSTOPS_CUDA=1");
#endif
  }
  robustops::counter_rng_cpu(out, index, b1, b2, normal);
}

// v1_response (forward, backward): robustops/ops/v1_response.py has validated the
// tensors and chosen the layout; index may be None when noise is off.
robustops::V1Params v1_params(int64_t simple, double k_exc, double noise_scale,
                              double noise_level, bool noise, int64_t base1, int64_t base2,
                              bool channels_last) {
  return robustops::V1Params{simple, k_exc, noise_scale, noise_level, noise,
                             static_cast<uint32_t>(base1), static_cast<uint32_t>(base2),
                             channels_last};
}

void v1_response_entry(at::Tensor out, const at::Tensor& q0, const at::Tensor& q1,
                       const c10::optional<at::Tensor>& index, int64_t simple, double k_exc,
                       double noise_scale, double noise_level, bool noise, int64_t base1,
                       int64_t base2, bool channels_last) {
  const auto p = v1_params(simple, k_exc, noise_scale, noise_level, noise, base1, base2,
                           channels_last);
  const at::Tensor idx = or_undefined(index);
  if (q0.is_cuda()) {
#ifdef ROBUSTOPS_WITH_CUDA
    robustops::v1_response_cuda(out, q0, q1, idx, p);
    return;
#else
    TORCH_CHECK(false, "robustops._C was built without CUDA; rebuild with ROBUSTOPS_CUDA=1");
#endif
  }
  robustops::v1_response_cpu(out, q0, q1, idx, p);
}

void v1_response_backward_entry(at::Tensor grad_q0, at::Tensor grad_q1,
                                const at::Tensor& grad_out, const at::Tensor& q0,
                                const at::Tensor& q1, const c10::optional<at::Tensor>& index,
                                int64_t simple, double k_exc, double noise_scale,
                                double noise_level, bool noise, int64_t base1, int64_t base2,
                                bool channels_last) {
  const auto p = v1_params(simple, k_exc, noise_scale, noise_level, noise, base1, base2,
                           channels_last);
  const at::Tensor idx = or_undefined(index);
  if (q0.is_cuda()) {
#ifdef ROBUSTOPS_WITH_CUDA
    robustops::v1_response_backward_cuda(grad_q0, grad_q1, grad_out, q0, q1, idx, p);
    return;
#else
    TORCH_CHECK(false, "robustops._C was built without CUDA; rebuild with ROBUSTOPS_CUDA=1");
#endif
  }
  robustops::v1_response_backward_cpu(grad_q0, grad_q1, grad_out, q0, q1, idx, p);
}

// gabor_bank (forward, backward): robustops/ops/gabor_bank.py has validated the
// parameters and allocated out / the five (F,) gradients.
void gabor_bank_entry(at::Tensor out, const at::Tensor& frequency, const at::Tensor& sigma_x,
                      const at::Tensor& sigma_y, const at::Tensor& theta,
                      const at::Tensor& phase) {
  if (out.is_cuda()) {
#ifdef ROBUSTOPS_WITH_CUDA
    robustops::gabor_bank_cuda(out, frequency, sigma_x, sigma_y, theta, phase);
    return;
#else
    TORCH_CHECK(false, "robustops._C was built without CUDA; rebuild with ROBUSTOPS_CUDA=1");
#endif
  }
  robustops::gabor_bank_cpu(out, frequency, sigma_x, sigma_y, theta, phase);
}

void gabor_bank_backward_entry(const at::Tensor& grad_out, const at::Tensor& frequency,
                               const at::Tensor& sigma_x, const at::Tensor& sigma_y,
                               const at::Tensor& theta, const at::Tensor& phase,
                               at::Tensor grad_frequency, at::Tensor grad_sigma_x,
                               at::Tensor grad_sigma_y, at::Tensor grad_theta,
                               at::Tensor grad_phase) {
  if (grad_out.is_cuda()) {
#ifdef ROBUSTOPS_WITH_CUDA
    robustops::gabor_bank_backward_cuda(grad_out, frequency, sigma_x, sigma_y, theta, phase,
                                        grad_frequency, grad_sigma_x, grad_sigma_y, grad_theta,
                                        grad_phase);
    return;
#else
    TORCH_CHECK(false, "robustops._C was built without CUDA; rebuild with ROBUSTOPS_CUDA=1");
#endif
  }
  robustops::gabor_bank_backward_cpu(grad_out, frequency, sigma_x, sigma_y, theta, phase,
                                     grad_frequency, grad_sigma_x, grad_sigma_y, grad_theta,
                                     grad_phase);
}

// TENET (channel_kmeans: CPU only; group_inhibition_mask, group_orthogonality_loss):
// robustops/ops/<op>.py has validated the tensors and allocated the outputs.
void channel_kmeans_entry(at::Tensor assignment, at::Tensor medoids, at::Tensor iterations,
                          const at::Tensor& features, const c10::optional<at::Tensor>& init,
                          const at::Tensor& index, int64_t base, int64_t max_iter,
                          double shift_threshold) {
  TORCH_CHECK(features.device().is_cpu(), "channel_kmeans has a CPU kernel only");
  robustops::channel_kmeans_cpu(assignment, medoids, iterations, features, or_undefined(init),
                                index, static_cast<uint32_t>(base), max_iter, shift_threshold);
}

void group_inhibition_mask_entry(at::Tensor out, const at::Tensor& features,
                                 const at::Tensor& grad, const at::Tensor& assignment,
                                 int64_t num_groups) {
  if (features.is_cuda()) {
#ifdef ROBUSTOPS_WITH_CUDA
    robustops::group_inhibition_mask_cuda(out, features, grad, assignment, num_groups);
    return;
#else
    TORCH_CHECK(false, "robustops._C was built without CUDA; rebuild with ROBUSTOPS_CUDA=1");
#endif
  }
  robustops::group_inhibition_mask_cpu(out, features, grad, assignment, num_groups);
}

void group_orthogonality_loss_entry(at::Tensor out, const at::Tensor& features,
                                    const at::Tensor& assignment, int64_t num_groups) {
  if (features.is_cuda()) {
#ifdef ROBUSTOPS_WITH_CUDA
    robustops::group_orthogonality_loss_cuda(out, features, assignment, num_groups);
    return;
#else
    TORCH_CHECK(false, "robustops._C was built without CUDA; rebuild with ROBUSTOPS_CUDA=1");
#endif
  }
  robustops::group_orthogonality_loss_cpu(out, features, assignment, num_groups);
}

void group_orthogonality_loss_backward_entry(at::Tensor grad_features,
                                             const at::Tensor& grad_out,
                                             const at::Tensor& features,
                                             const at::Tensor& assignment, int64_t num_groups) {
  if (features.is_cuda()) {
#ifdef ROBUSTOPS_WITH_CUDA
    robustops::group_orthogonality_loss_backward_cuda(grad_features, grad_out, features,
                                                      assignment, num_groups);
    return;
#else
    TORCH_CHECK(false, "robustops._C was built without CUDA; rebuild with ROBUSTOPS_CUDA=1");
#endif
  }
  robustops::group_orthogonality_loss_backward_cpu(grad_features, grad_out, features,
                                                   assignment, num_groups);
}

// Robust attribution: ig_accumulate, pixel_softmax_kl, sign_matched_product (forward,
// backward) and rank_metrics (CPU only); robustops/ops/<op>.py has validated the tensors,
// chosen the layouts and allocated the outputs.
void ig_accumulate_entry(at::Tensor out, at::Tensor acc, const at::Tensor& path_grads,
                         const at::Tensor& x, const at::Tensor& baseline,
                         const at::Tensor& weights) {
  if (x.is_cuda()) {
#ifdef ROBUSTOPS_WITH_CUDA
    robustops::ig_accumulate_cuda(out, acc, path_grads, x, baseline, weights);
    return;
#else
    TORCH_CHECK(false, "robustops._C was built without CUDA; rebuild with ROBUSTOPS_CUDA=1");
#endif
  }
  robustops::ig_accumulate_cpu(out, acc, path_grads, x, baseline, weights);
}

void ig_accumulate_backward_entry(at::Tensor grad_path, at::Tensor grad_x,
                                  const at::Tensor& grad_out, const at::Tensor& grad_acc,
                                  const at::Tensor& acc, const at::Tensor& x,
                                  const at::Tensor& baseline, const at::Tensor& weights) {
  if (x.is_cuda()) {
#ifdef ROBUSTOPS_WITH_CUDA
    robustops::ig_accumulate_backward_cuda(grad_path, grad_x, grad_out, grad_acc, acc, x,
                                           baseline, weights);
    return;
#else
    TORCH_CHECK(false, "robustops._C was built without CUDA; rebuild with ROBUSTOPS_CUDA=1");
#endif
  }
  robustops::ig_accumulate_backward_cpu(grad_path, grad_x, grad_out, grad_acc, acc, x, baseline,
                                        weights);
}

void pixel_softmax_kl_entry(at::Tensor out, at::Tensor lse, const at::Tensor& attr) {
  if (attr.is_cuda()) {
#ifdef ROBUSTOPS_WITH_CUDA
    robustops::pixel_softmax_kl_cuda(out, lse, attr);
    return;
#else
    TORCH_CHECK(false, "robustops._C was built without CUDA; rebuild with ROBUSTOPS_CUDA=1");
#endif
  }
  robustops::pixel_softmax_kl_cpu(out, lse, attr);
}

void pixel_softmax_kl_backward_entry(at::Tensor grad_s, const at::Tensor& grad_out,
                                     const at::Tensor& lse, const at::Tensor& attr) {
  if (attr.is_cuda()) {
#ifdef ROBUSTOPS_WITH_CUDA
    robustops::pixel_softmax_kl_backward_cuda(grad_s, grad_out, lse, attr);
    return;
#else
    TORCH_CHECK(false, "robustops._C was built without CUDA; rebuild with ROBUSTOPS_CUDA=1");
#endif
  }
  robustops::pixel_softmax_kl_backward_cpu(grad_s, grad_out, lse, attr);
}

void sign_matched_product_entry(at::Tensor out, const at::Tensor& b, const at::Tensor& d) {
  if (b.is_cuda()) {
#ifdef ROBUSTOPS_WITH_CUDA
    robustops::sign_matched_product_cuda(out, b, d);
    return;
#else
    TORCH_CHECK(false, "robustops._C was built without CUDA; rebuild with ROBUSTOPS_CUDA=1");
#endif
  }
  robustops::sign_matched_product_cpu(out, b, d);
}

void sign_matched_product_backward_entry(at::Tensor grad_b, at::Tensor grad_d,
                                         const at::Tensor& grad_out, const at::Tensor& b,
                                         const at::Tensor& d) {
  if (b.is_cuda()) {
#ifdef ROBUSTOPS_WITH_CUDA
    robustops::sign_matched_product_backward_cuda(grad_b, grad_d, grad_out, b, d);
    return;
#else
    TORCH_CHECK(false, "robustops._C was built without CUDA; rebuild with ROBUSTOPS_CUDA=1");
#endif
  }
  robustops::sign_matched_product_backward_cpu(grad_b, grad_d, grad_out, b, d);
}

bool rank_metrics_entry(at::Tensor out, const at::Tensor& a, const at::Tensor& b, int64_t k) {
  TORCH_CHECK(a.device().is_cpu(), "rank_metrics has a CPU kernel only (CUDA tensors run "
              "the PyTorch reference)");
  return robustops::rank_metrics_cpu(out, a, b, k);
}

// part_moments (forward, backward): robustops/ops/part_moments.py has validated the
// tensors, made them contiguous and allocated the outputs.
void part_moments_entry(at::Tensor features, at::Tensor stats, at::Tensor softmax,
                        const at::Tensor& logits, bool weighted) {
  if (logits.is_cuda()) {
#ifdef ROBUSTOPS_WITH_CUDA
    robustops::part_moments_cuda(features, stats, softmax, logits, weighted);
    return;
#else
    TORCH_CHECK(false, "robustops._C was built without CUDA; rebuild with ROBUSTOPS_CUDA=1");
#endif
  }
  robustops::part_moments_cpu(features, stats, softmax, logits, weighted);
}

void part_moments_backward_entry(at::Tensor grad_logits, const at::Tensor& grad,
                                 const at::Tensor& logits, const at::Tensor& stats,
                                 const at::Tensor& softmax, bool weighted) {
  if (logits.is_cuda()) {
#ifdef ROBUSTOPS_WITH_CUDA
    robustops::part_moments_backward_cuda(grad_logits, grad, logits, stats, softmax, weighted);
    return;
#else
    TORCH_CHECK(false, "robustops._C was built without CUDA; rebuild with ROBUSTOPS_CUDA=1");
#endif
  }
  robustops::part_moments_backward_cpu(grad_logits, grad, logits, stats, softmax, weighted);
}

py::dict build_info() {
  py::dict info;
  info["torch_version"] = std::string(TORCH_VERSION);
  py::list backends;
  backends.append("cpp");
#ifdef ROBUSTOPS_WITH_CUDA
  backends.append("cuda");
  const int v = CUDART_VERSION;
  info["cuda_version"] = std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
  info["cuda_archs"] = std::string(ROBUSTOPS_CUDA_ARCHS);
#else
  info["cuda_version"] = py::none();
  info["cuda_archs"] = std::string();
#endif
  info["compiled_backends"] = backends;
  info["cuda_build"] = std::string(ROBUSTOPS_CUDA_NOTE);
#ifdef _OPENMP
  info["openmp"] = true;
  info["openmp_max_threads"] = omp_get_max_threads();
#else
  info["openmp"] = false;
  info["openmp_max_threads"] = 1;
#endif
  info["aten_threads"] = at::get_num_threads();
#if defined(__clang__)
  info["compiler"] = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  info["compiler"] = std::string("gcc ") + __VERSION__;
#else
  info["compiler"] = std::string("unknown");
#endif
  info["cplusplus"] = static_cast<long>(__cplusplus);
  return info;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "robustops compiled kernels (C++ CPU, optional CUDA)";
  m.def("pgd_step", &pgd_step_entry,
        "Fused PGD update written into out (may be x). Returns 0 (done), 1 (done, but "
        "the result or x_nat is not finite; CPU only) or 2 (layout needs copies, nothing done).",
        py::arg("out"), py::arg("x"), py::arg("x_nat"), py::arg("grad"), py::arg("eps"),
        py::arg("alpha"), py::arg("eps_t"), py::arg("alpha_t"), py::arg("lo"),
        py::arg("hi"), py::arg("l2"));
  m.def("pgd_step_inplace_checked", &pgd_step_inplace_checked,
        "In-place pgd_step for the common eager CPU call; returns 0 (done), 1 (done, not "
        "finite) or 2 (not the common case: nothing done).",
        py::arg("x"), py::arg("x_nat"), py::arg("grad"), py::arg("eps"), py::arg("alpha"),
        py::arg("lo"), py::arg("hi"), py::arg("l2"), py::arg("grad_enabled"));
  m.def("counter_rng", &counter_rng_entry,
        "Counter-based uniforms (normal=False) or normals into out (B, N) contiguous, keyed by "
        "index (B,) int64 and the 32-bit stream bases.",
        py::arg("out"), py::arg("index"), py::arg("base1"), py::arg("base2"), py::arg("normal"));
  m.def("v1_response", &v1_response_entry,
        "Fused V1 epilogue (simple/complex cells, gain, counter-based noise) written into out "
        "(q0's layout: contiguous NCHW or channels_last).",
        py::arg("out"), py::arg("q0"), py::arg("q1"), py::arg("index"), py::arg("simple"),
        py::arg("k_exc"), py::arg("noise_scale"), py::arg("noise_level"), py::arg("noise"),
        py::arg("base1"), py::arg("base2"), py::arg("channels_last"));
  m.def("v1_response_backward", &v1_response_backward_entry,
        "Gradients of v1_response wrt q0 and q1 written into grad_q0, grad_q1 (noise "
        "recomputed from the counter).",
        py::arg("grad_q0"), py::arg("grad_q1"), py::arg("grad_out"), py::arg("q0"),
        py::arg("q1"), py::arg("index"), py::arg("simple"), py::arg("k_exc"),
        py::arg("noise_scale"), py::arg("noise_level"), py::arg("noise"), py::arg("base1"),
        py::arg("base2"), py::arg("channels_last"));
  m.def("gabor_bank", &gabor_bank_entry,
        "Gabor filter bank written into out (F, k, k) contiguous from (F,) contiguous "
        "frequency, sigma_x, sigma_y, theta, phase of out's dtype.",
        py::arg("out"), py::arg("frequency"), py::arg("sigma_x"), py::arg("sigma_y"),
        py::arg("theta"), py::arg("phase"));
  m.def("gabor_bank_backward", &gabor_bank_backward_entry,
        "Gradients of gabor_bank wrt its five (F,) parameters, written into the grad_* tensors.",
        py::arg("grad_out"), py::arg("frequency"), py::arg("sigma_x"), py::arg("sigma_y"),
        py::arg("theta"), py::arg("phase"), py::arg("grad_frequency"), py::arg("grad_sigma_x"),
        py::arg("grad_sigma_y"), py::arg("grad_theta"), py::arg("grad_phase"));
  m.def("channel_kmeans", &channel_kmeans_entry,
        "TENET channel k-means (CPU): assignment (B, C), medoids (B, K), iterations (B,) "
        "written from features (B, C, H, W) contiguous and init (B, K) int64, or (init None) "
        "the medoids drawn from the counter key base and index (B,) int64.",
        py::arg("assignment"), py::arg("medoids"), py::arg("iterations"), py::arg("features"),
        py::arg("init"), py::arg("index"), py::arg("base"), py::arg("max_iter"),
        py::arg("shift_threshold"));
  m.def("group_inhibition_mask", &group_inhibition_mask_entry,
        "TENET group-wise inhibition mask written into out (B, C, H, W) from features, grad "
        "(contiguous) and assignment (B, C) int64.",
        py::arg("out"), py::arg("features"), py::arg("grad"), py::arg("assignment"),
        py::arg("num_groups"));
  m.def("group_orthogonality_loss", &group_orthogonality_loss_entry,
        "TENET group orthogonality loss written into out (0-d).",
        py::arg("out"), py::arg("features"), py::arg("assignment"), py::arg("num_groups"));
  m.def("group_orthogonality_loss_backward", &group_orthogonality_loss_backward_entry,
        "Gradient of group_orthogonality_loss wrt features written into grad_features.",
        py::arg("grad_features"), py::arg("grad_out"), py::arg("features"),
        py::arg("assignment"), py::arg("num_groups"));
  m.def("ig_accumulate", &ig_accumulate_entry,
        "Integrated gradients: acc = sum_s weights[s] path_grads[s] and out = (x - baseline) * "
        "acc written into out, acc (path_grads (S, n), x, baseline, out, acc one dense layout; "
        "acc and weights (S,) in the compute type).",
        py::arg("out"), py::arg("acc"), py::arg("path_grads"), py::arg("x"), py::arg("baseline"),
        py::arg("weights"));
  m.def("ig_accumulate_backward", &ig_accumulate_backward_entry,
        "Gradients of ig_accumulate: grad_path[s] = weights[s] ((x - baseline) grad_out + "
        "grad_acc), grad_x = grad_out acc.",
        py::arg("grad_path"), py::arg("grad_x"), py::arg("grad_out"), py::arg("grad_acc"),
        py::arg("acc"), py::arg("x"), py::arg("baseline"), py::arg("weights"));
  m.def("pixel_softmax_kl", &pixel_softmax_kl_entry,
        "KL(uniform || softmax over pixels of the channel sum) per sample of attr (B, C, N) "
        "contiguous into out (B,), and the logsumexp into lse (B,) (compute type).",
        py::arg("out"), py::arg("lse"), py::arg("attr"));
  m.def("pixel_softmax_kl_backward", &pixel_softmax_kl_backward_entry,
        "Gradient of pixel_softmax_kl wrt the channel sum (that of every channel) written into "
        "grad_s (B, N), from grad_out (B,), the saved lse (B,) and attr.",
        py::arg("grad_s"), py::arg("grad_out"), py::arg("lse"), py::arg("attr"));
  m.def("sign_matched_product", &sign_matched_product_entry,
        "WACR's sign-matched product per sample of b, d (B, N) contiguous, into out (B,).",
        py::arg("out"), py::arg("b"), py::arg("d"));
  m.def("sign_matched_product_backward", &sign_matched_product_backward_entry,
        "Gradients of sign_matched_product wrt b and d written into grad_b, grad_d.",
        py::arg("grad_b"), py::arg("grad_d"), py::arg("grad_out"), py::arg("b"), py::arg("d"));
  m.def("rank_metrics", &rank_metrics_entry,
        "Top-k intersection, Kendall tau-b and Spearman rho of B pairs of rows of a, b (B, N) "
        "contiguous CPU float32/float64, written into out (B, 3) float64; returns True if a "
        "NaN was seen.",
        py::arg("out"), py::arg("a"), py::arg("b"), py::arg("k"));
  m.def("part_moments", &part_moments_entry,
        "Part bbox features (B, K, 5) and float64 moments (B, 6K+1) of part logits "
        "(B, K+1, H, W) contiguous, written into features and stats; the channel softmax "
        "too, into softmax, unless it is empty.",
        py::arg("features"), py::arg("stats"), py::arg("softmax"), py::arg("logits"),
        py::arg("weighted"));
  m.def("part_moments_backward", &part_moments_backward_entry,
        "Gradient of part_moments wrt the logits written into grad_logits, from grad "
        "(B, K, 5) float64, the forward's stats and its saved softmax (empty: recomputed "
        "from the logits).",
        py::arg("grad_logits"), py::arg("grad"), py::arg("logits"), py::arg("stats"),
        py::arg("softmax"), py::arg("weighted"));
  m.def("build_info", &build_info, "How this extension was built.");
}
