// Host entry point of the channel_kmeans op (bound in csrc/module.cpp). CPU only: on a
// GPU, robustops/ops/channel_kmeans.py runs its batched PyTorch composition instead.
//
// Contract (checked in robustops/ops/channel_kmeans.py, not here):
//   features (B, C, H, W) contiguous float32 or float64 (computed in its dtype);
//   init (B, K) int64 contiguous, K distinct channel indices in [0, C) per sample, or
//   undefined: then sample b starts from the K channels with the smallest keys
//   (rng_bits(rng_row(base, index[b]), c) >> 9) * C + c (kernels/counter_rng.h), in
//   increasing key order, as robustops.ops.channel_kmeans.kmeans_init draws them;
//   index (B,) int64 contiguous global sample indices (read only without init);
//   assignment (B, C), medoids (B, K), iterations (B,): int64 contiguous outputs (K is
//   medoids.size(1)); max_iter >= 1, shift_threshold >= 0.
#pragma once
#include <ATen/core/Tensor.h>

namespace robustops {

void channel_kmeans_cpu(at::Tensor& assignment, at::Tensor& medoids, at::Tensor& iterations,
                        const at::Tensor& features, const at::Tensor& init,
                        const at::Tensor& index, uint32_t base, int64_t max_iter,
                        double shift_threshold);

}  // namespace robustops
