// robustops._C: the kernel entry points and build_info().
#include <torch/extension.h>

#include <ATen/Parallel.h>
#include <torch/version.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "counter_rng.h"
#include "gabor_bank.h"
#include "pgd_step.h"
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
  m.def("build_info", &build_info, "How this extension was built.");
}
