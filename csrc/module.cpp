// robustops._C: the pybind11 module, holding only what is not an op: build_info().
// Every kernel and op lives in robustops/_ops (csrc/ops, csrc/cpu, csrc/cuda), a library
// without Python that robustops/backend.py loads with torch.ops.load_library and a C++
// program can dlopen. Includes are minimal (no torch/extension.h) so this compiles fast.
#include <pybind11/pybind11.h>

#include <ATen/Parallel.h>
#include <torch/version.h>

#include <string>

#ifdef _OPENMP
#include <omp.h>
#endif

#ifndef ROBUSTOPS_CUDA_ARCHS
#define ROBUSTOPS_CUDA_ARCHS ""
#endif
#ifndef ROBUSTOPS_CUDA_NOTE
#define ROBUSTOPS_CUDA_NOTE "unknown (built without setup.py)"
#endif

#ifdef ROBUSTOPS_WITH_CUDA
#include <cuda_runtime_api.h>  // CUDART_VERSION: the toolkit this was built with
#endif

namespace py = pybind11;

namespace {

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
  m.doc() = "robustops build information (the kernels are ops in robustops/_ops)";
  m.def("build_info", &build_info, "How robustops was built.");
}
