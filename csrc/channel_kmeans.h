// Host entry points of the channel_kmeans op: the device kernel (csrc/cpu; there is no
// CUDA kernel: on a GPU, robustops/ops/channel_kmeans.py runs its Triton kernels or its
// batched PyTorch composition) and what csrc/ops/channel_kmeans.cpp shares with it
// (checks, operand preparation).
//
// Kernel contract (established by channel_kmeans_run, not checked by the kernels):
//   features (B, C, H, W) contiguous float32 or float64 (computed in its dtype);
//   init (B, K) int64 contiguous, K distinct channel indices in [0, C) per sample, or
//   undefined: then sample b starts from the K channels with the smallest keys
//   (rng_bits(rng_row(base, index[b]), c) >> 9) * C + c (kernels/counter_rng.h), in
//   increasing key order, as robustops.ops.channel_kmeans.kmeans_init draws them;
//   index (B,) int64 contiguous global sample indices (read only without init), or
//   undefined: sample b has index b;
//   assignment (B, C), medoids (B, K), iterations (B,): int64 contiguous outputs (K is
//   medoids.size(1)); max_iter >= 1, shift_threshold >= 0; reseed_farthest: an empty
//   group's new medoid is the free channel farthest from its own medoid (else, as the
//   paper's code, the lowest-index free channel).
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <tuple>

namespace robustops {

void channel_kmeans_cpu(at::Tensor& assignment, at::Tensor& medoids, at::Tensor& iterations,
                        const at::Tensor& features, const at::Tensor& init,
                        const at::Tensor& index, uint32_t base, int64_t max_iter,
                        double shift_threshold, bool reseed_farthest);

// A device kernel (channel_kmeans_cpu).
using ChannelKMeansKernel = void (*)(at::Tensor& assignment, at::Tensor& medoids,
                                     at::Tensor& iterations, const at::Tensor& features,
                                     const at::Tensor& init, const at::Tensor& index,
                                     uint32_t base, int64_t max_iter, double shift_threshold,
                                     bool reseed_farthest);

// Every argument check of the op, with the messages of robustops/ops/channel_kmeans.py
// (init's values are read: the op runs on the CPU).
void check_channel_kmeans_args(const at::Tensor& features, const std::optional<at::Tensor>& init,
                               const std::optional<at::Tensor>& index, int64_t base,
                               int64_t num_groups, int64_t max_iter, double shift_threshold);

// Checks the arguments, gives `kernel` contiguous operands, allocates and fills the
// three outputs.
std::tuple<at::Tensor, at::Tensor, at::Tensor> channel_kmeans_run(
    const at::Tensor& features, const std::optional<at::Tensor>& init,
    const std::optional<at::Tensor>& index, int64_t base, int64_t num_groups, int64_t max_iter,
    double shift_threshold, bool reseed_farthest, ChannelKMeansKernel kernel);

// The op's kernel for one dispatch key, over that device's `kernel`.
template <ChannelKMeansKernel kernel>
std::tuple<at::Tensor, at::Tensor, at::Tensor> channel_kmeans_op(
    const at::Tensor& features, const std::optional<at::Tensor>& init,
    const std::optional<at::Tensor>& index, int64_t base, int64_t num_groups, int64_t max_iter,
    double shift_threshold, bool reseed_farthest) {
  return channel_kmeans_run(features, init, index, base, num_groups, max_iter, shift_threshold,
                            reseed_farthest, kernel);
}

// The checks of an assignment argument, shared by the ops that take channel_kmeans'
// grouping (group_inhibition_mask, group_orthogonality_loss): ValueErrors unless
// assignment is (B, C) int64 on features' device and 1 <= num_groups <= C (the messages
// of check_assignment in robustops/ops/channel_kmeans.py). features must be 4-D.
void check_assignment(const char* op, const at::Tensor& features, const at::Tensor& assignment,
                      int64_t num_groups);

}  // namespace robustops
