// robustops._C: the kernel entry points and build_info().
#include <torch/extension.h>

#include <ATen/Parallel.h>
#include <torch/version.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "pgd_step.h"

#ifndef ROBUSTOPS_CUDA_ARCHS
#define ROBUSTOPS_CUDA_ARCHS ""
#endif

#ifdef ROBUSTOPS_WITH_CUDA
#include <cuda_runtime_api.h>  // CUDART_VERSION: the toolkit this was built with
#endif

namespace {

// Undefined tensor for None so the kernels see one type.
at::Tensor or_undefined(const c10::optional<at::Tensor>& t) {
  return t.has_value() ? *t : at::Tensor();
}

bool pgd_step_entry(at::Tensor out, const at::Tensor& x, const at::Tensor& x_nat,
                    const at::Tensor& grad, double eps, double alpha,
                    const c10::optional<at::Tensor>& eps_t,
                    const c10::optional<at::Tensor>& alpha_t, double lo, double hi,
                    bool l2) {
  if (x.is_cuda()) {
#ifdef ROBUSTOPS_WITH_CUDA
    return robustops::pgd_step_cuda(out, x, x_nat, grad, eps, alpha, or_undefined(eps_t),
                                    or_undefined(alpha_t), lo, hi, l2);
#else
    TORCH_CHECK(false, "robustops._C was built without CUDA; rebuild with ROBUSTOPS_CUDA=1");
#endif
  }
  return robustops::pgd_step_cpu(out, x, x_nat, grad, eps, alpha, or_undefined(eps_t),
                                 or_undefined(alpha_t), lo, hi, l2);
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
        "Fused PGD update written into out (may alias x); returns whether the result "
        "and x_nat are finite (always true on CUDA).",
        py::arg("out"), py::arg("x"), py::arg("x_nat"), py::arg("grad"), py::arg("eps"),
        py::arg("alpha"), py::arg("eps_t"), py::arg("alpha_t"), py::arg("lo"),
        py::arg("hi"), py::arg("l2"));
  m.def("build_info", &build_info, "How this extension was built.");
}
