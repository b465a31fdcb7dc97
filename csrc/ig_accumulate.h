// Host entry points of the ig_accumulate op: the device kernels (csrc/cpu, csrc/cuda) and
// what csrc/ops/ig_accumulate.cpp shares with them (checks, layout handling).
//
// Kernel contract (established by the runners below, not checked by the kernels):
//   path_grads / grad_path (S, n) and x, baseline, out, grad_out, grad_x (n) of one
//   floating dtype, and acc, grad_acc (n) of the compute type, all in one memory layout:
//   the kernels walk the n elements of a sample batch as one dense block (same strides
//   for all, path step s at offset s * n). weights: (S,) contiguous, compute type.
//   The forward kernels also take an undefined baseline (zeros) and undefined weights
//   (1/S each, the op's defaults), so the common call allocates neither, and an
//   undefined acc (not wanted: robustops::ig_accumulate returns out alone).
// Compute type: float32, or float64 for float64 tensors (half/bfloat16 in float).
#pragma once
#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>

namespace robustops {

// out = (x - baseline) * acc, acc = sum_s weights[s] path_grads[s].
void ig_accumulate_cpu(at::Tensor& out, at::Tensor& acc, const at::Tensor& path_grads,
                       const at::Tensor& x, const at::Tensor& baseline,
                       const at::Tensor& weights);
// grad_path[s] = weights[s] ((x - baseline) grad_out + grad_acc), grad_x = grad_out acc.
void ig_accumulate_backward_cpu(at::Tensor& grad_path, at::Tensor& grad_x,
                                const at::Tensor& grad_out, const at::Tensor& grad_acc,
                                const at::Tensor& acc, const at::Tensor& x,
                                const at::Tensor& baseline, const at::Tensor& weights);

// Device kernels (ig_accumulate[_backward]_cpu / _cuda).
using IgKernel = void (*)(at::Tensor& out, at::Tensor& acc, const at::Tensor& path_grads,
                          const at::Tensor& x, const at::Tensor& baseline,
                          const at::Tensor& weights);
using IgBackwardKernel = void (*)(at::Tensor& grad_path, at::Tensor& grad_x,
                                  const at::Tensor& grad_out, const at::Tensor& grad_acc,
                                  const at::Tensor& acc, const at::Tensor& x,
                                  const at::Tensor& baseline, const at::Tensor& weights);

// Every argument check of the op, with the messages of robustops/ops/ig_accumulate.py.
void check_ig_accumulate_args(const at::Tensor& path_grads, const at::Tensor& x,
                              const std::optional<at::Tensor>& baseline,
                              const std::optional<at::Tensor>& weights);

// Checks the arguments, fills in the defaults (zero baseline, weights 1/S), broadcasts the
// baseline, gives `kernel` operands in one dense layout (copies only when they differ)
// and returns (out like x, acc like x in the compute type; undefined unless with_acc).
std::tuple<at::Tensor, at::Tensor> ig_accumulate_run(const at::Tensor& path_grads,
                                                     const at::Tensor& x,
                                                     const std::optional<at::Tensor>& baseline,
                                                     const std::optional<at::Tensor>& weights,
                                                     bool with_acc, IgKernel kernel);
// The same for the backward: (grad_path (S, *x.shape) with x's layout per step, grad_x).
std::tuple<at::Tensor, at::Tensor> ig_accumulate_backward_run(
    const at::Tensor& grad_out, const at::Tensor& grad_acc, const at::Tensor& acc,
    const at::Tensor& x, const at::Tensor& baseline, const at::Tensor& weights,
    IgBackwardKernel kernel);

// The ops' kernels for one dispatch key, over that device's kernels.
template <IgKernel kernel>
at::Tensor ig_accumulate_op(const at::Tensor& path_grads, const at::Tensor& x,
                            const std::optional<at::Tensor>& baseline,
                            const std::optional<at::Tensor>& weights) {
  return std::get<0>(ig_accumulate_run(path_grads, x, baseline, weights, false, kernel));
}

template <IgKernel kernel>
std::tuple<at::Tensor, at::Tensor> ig_accumulate_with_acc_op(
    const at::Tensor& path_grads, const at::Tensor& x, const std::optional<at::Tensor>& baseline,
    const std::optional<at::Tensor>& weights) {
  return ig_accumulate_run(path_grads, x, baseline, weights, true, kernel);
}

template <IgBackwardKernel kernel>
std::tuple<at::Tensor, at::Tensor> ig_accumulate_backward_op(
    const at::Tensor& grad_out, const at::Tensor& grad_acc, const at::Tensor& acc,
    const at::Tensor& x, const at::Tensor& baseline, const at::Tensor& weights) {
  return ig_accumulate_backward_run(grad_out, grad_acc, acc, x, baseline, weights, kernel);
}

#ifdef ROBUSTOPS_WITH_CUDA
void ig_accumulate_cuda(at::Tensor& out, at::Tensor& acc, const at::Tensor& path_grads,
                        const at::Tensor& x, const at::Tensor& baseline,
                        const at::Tensor& weights);
void ig_accumulate_backward_cuda(at::Tensor& grad_path, at::Tensor& grad_x,
                                 const at::Tensor& grad_out, const at::Tensor& grad_acc,
                                 const at::Tensor& acc, const at::Tensor& x,
                                 const at::Tensor& baseline, const at::Tensor& weights);
#endif

}  // namespace robustops
