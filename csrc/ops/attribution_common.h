// Helpers shared by the robust-attribution ops (ig_accumulate, pixel_softmax_kl,
// sign_matched_product): their dtype check (their Python API has always raised
// ValueError for a bad dtype) and output allocation.
#pragma once
#include <ATen/EmptyTensor.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_strided.h>
#include <c10/util/Exception.h>

#include "ops/arg_checks.h"

namespace robustops {

// float32, float64, float16 or bfloat16, or a ValueError.
inline void check_float_dtype(const char* op, const char* name, const at::Tensor& t) {
  const auto s = t.scalar_type();
  TORCH_CHECK_VALUE(s == at::kFloat || s == at::kDouble || s == at::kHalf || s == at::kBFloat16,
                    op, ": ", name, " must be float32, float64, float16 or bfloat16, got ",
                    py_dtype(s));
}

// An output tensor for a kernel. CPU outputs come straight from the CPU allocator, as
// ATen's own CPU kernels allocate theirs: at::empty's trip through the dispatcher costs
// about as much as the rest of a call on a tiny input. Other devices use at::empty.
inline at::Tensor empty_output(c10::IntArrayRef sizes, const at::TensorOptions& options) {
  if (options.device().is_cpu()) return at::detail::empty_cpu(sizes, options);
  return at::empty(sizes, options);
}

inline at::Tensor empty_output_strided(c10::IntArrayRef sizes, c10::IntArrayRef strides,
                                       const at::TensorOptions& options) {
  if (options.device().is_cpu()) return at::detail::empty_strided_cpu(sizes, strides, options);
  return at::empty_strided(sizes, strides, options);
}

}  // namespace robustops
