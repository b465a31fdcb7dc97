// counter_rng: the op's schema and argument checks. The kernels: csrc/cpu/counter_rng.cpp,
// csrc/cuda/counter_rng.cu (hash in kernels/counter_rng.h); the fake kernel and the
// plain-PyTorch reference: robustops/ops/counter_rng.py. Random numbers have no
// gradient: the Autograd key falls through to the device kernel.
#include <torch/library.h>

#include "counter_rng.h"
#include "ops/arg_checks.h"

namespace robustops {

void check_counter_rng_args(const at::Tensor& index, int64_t numel, at::ScalarType dtype) {
  TORCH_CHECK_VALUE(index.scalar_type() == at::kLong && index.dim() == 1,
                    "index must be a (B,) int64 tensor of global sample indices");
  TORCH_CHECK_VALUE(numel >= 0, "numel must be an int >= 0, got ", numel);
  TORCH_CHECK_VALUE(dtype == at::kFloat || dtype == at::kDouble,
                    "dtype must be float32 or float64, got ", py_dtype(dtype));
}

TORCH_LIBRARY_FRAGMENT(robustops, m) {
  m.set_python_module("robustops.ops.counter_rng");
  m.def("counter_rng(Tensor index, int numel, int base1, int base2, bool normal, "
        "ScalarType dtype) -> Tensor");
}

TORCH_LIBRARY_IMPL(robustops, Autograd, m) {
  m.impl("counter_rng", torch::CppFunction::makeFallthrough());
}

}  // namespace robustops
