// Host entry points of the rank_metrics op: the device kernel (csrc/cpu; there is no CUDA
// kernel: on a GPU, robustops/ops/rank_metrics.py runs its Triton kernels or its PyTorch
// reference) and what csrc/ops/rank_metrics.cpp shares with it (checks, operand
// preparation).
//
// Kernel contract (established by rank_metrics_run, not checked by the kernel):
//   a, b: contiguous (B, *) tensors of one shape and dtype (float32 or float64): B rows
//   of N >= 1 values each, B >= 1;
//   k in [1, N]; topk, kendall, spearman: (B,) contiguous float64 receiving, per row,
//   the top-k intersection, Kendall tau-b and Spearman rho of a[r] and b[r].
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <tuple>

namespace robustops {

// Returns true when a or b holds a NaN (the outputs are then meaningless).
bool rank_metrics_cpu(at::Tensor& topk, at::Tensor& kendall, at::Tensor& spearman,
                      const at::Tensor& a, const at::Tensor& b, int64_t k);

// A device kernel (rank_metrics_cpu).
using RankMetricsKernel = bool (*)(at::Tensor& topk, at::Tensor& kendall, at::Tensor& spearman,
                                   const at::Tensor& a, const at::Tensor& b, int64_t k);

// Every argument check of the op, with the messages of robustops/ops/rank_metrics.py.
void check_rank_metrics_args(const at::Tensor& a, const at::Tensor& b, int64_t k);

// Checks the arguments, gives `kernel` contiguous maps of one floating dtype (float64
// when either is float64 or an integer type, else float32), runs it and raises
// ValueError when it saw a NaN.
std::tuple<at::Tensor, at::Tensor, at::Tensor> rank_metrics_run(const at::Tensor& a,
                                                                const at::Tensor& b, int64_t k,
                                                                RankMetricsKernel kernel);

// The op's kernel for one dispatch key, over that device's `kernel`.
template <RankMetricsKernel kernel>
std::tuple<at::Tensor, at::Tensor, at::Tensor> rank_metrics_op(const at::Tensor& a,
                                                               const at::Tensor& b, int64_t k) {
  return rank_metrics_run(a, b, k, kernel);
}

}  // namespace robustops
