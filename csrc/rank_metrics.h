// Host entry point of the rank_metrics kernel (bound in csrc/module.cpp).
//
// Contract (checked in robustops/ops/rank_metrics.py, not here):
//   a, b: (B, N) contiguous CPU tensors of one dtype (float32 or float64);
//   k in [1, N]; out: (B, 3) contiguous float64 receiving, per row, the top-k
//   intersection, Kendall tau-b and Spearman rho of a[r] and b[r].
// CPU only: on CUDA tensors the plain-PyTorch reference runs (segmented sorts).
#pragma once
#include <ATen/core/Tensor.h>

namespace robustops {

// Returns true when a or b holds a NaN (out is then meaningless).
bool rank_metrics_cpu(at::Tensor& out, const at::Tensor& a, const at::Tensor& b, int64_t k);

}  // namespace robustops
