// channel_kmeans: the op's schema, argument checks, operand preparation and autograd
// kernel (the op has no gradient: its outputs are integer labels). The kernel:
// csrc/cpu/channel_kmeans.cpp (math in kernels/channel_kmeans.h); there is no CUDA
// kernel. The fake kernel, the plain-PyTorch reference and the Triton backend:
// robustops/ops/channel_kmeans.py.
//
// Also check_assignment, the checks of the grouping that group_inhibition_mask and
// group_orthogonality_loss take (as robustops/ops/channel_kmeans.py holds their Python form).
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "channel_kmeans.h"
#include "ops/arg_checks.h"

namespace robustops {

namespace {

constexpr const char* kOp = "channel_kmeans";

// "[3, 3, 4]": a row as Python's list() prints it.
std::string py_list(const int64_t* v, int64_t n) {
  std::string s = "[";
  for (int64_t i = 0; i < n; ++i) {
    if (i) s += ", ";
    s += std::to_string(v[i]);
  }
  return s + "]";
}

// init (B, K) int64 on the CPU: every row K distinct channel indices in [0, C).
void check_init_values(const at::Tensor& init, int64_t channels) {
  const at::Tensor rows = init.contiguous();
  const int64_t B = rows.size(0), K = rows.size(1);
  const int64_t* p = rows.const_data_ptr<int64_t>();
  std::vector<int64_t> sorted(K);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t* row = p + b * K;
    std::copy(row, row + K, sorted.begin());
    std::sort(sorted.begin(), sorted.end());
    const bool ok = K == 0 || (sorted.front() >= 0 && sorted.back() < channels &&
                               std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end());
    TORCH_CHECK_VALUE(ok, kOp, ": init[", b, "] = ", py_list(row, K), " must hold ", K,
                      " distinct channel indices in [0, ", channels, ")");
  }
}

}  // namespace

void check_assignment(const char* op, const at::Tensor& features, const at::Tensor& assignment,
                      int64_t num_groups) {
  const int64_t B = features.size(0), C = features.size(1);
  TORCH_CHECK_VALUE(assignment.scalar_type() == at::kLong && assignment.dim() == 2 &&
                        assignment.size(0) == B && assignment.size(1) == C,
                    op, ": assignment must be a (", B, ", ", C,
                    ") int64 tensor (one group label per channel), got ", py_shape(assignment),
                    " ", py_dtype(assignment));
  TORCH_CHECK_VALUE(assignment.device() == features.device(), op, ": assignment is on ",
                    py_device(assignment), " but features are on ", py_device(features));
  TORCH_CHECK_VALUE(num_groups >= 1 && num_groups <= C, op, ": num_groups must be in [1, C] = [1, ",
                    C, "], got ", num_groups);
}

void check_channel_kmeans_args(const at::Tensor& features, const std::optional<at::Tensor>& init,
                               const std::optional<at::Tensor>& index, int64_t base,
                               int64_t num_groups, int64_t max_iter, double shift_threshold) {
  TORCH_CHECK_VALUE(features.dim() == 4, kOp, ": features must be 4-D (B, C, H, W), got shape ",
                    py_shape(features));
  TORCH_CHECK_VALUE(features.scalar_type() == at::kFloat || features.scalar_type() == at::kDouble,
                    kOp, ": features must be float32 or float64, got ", py_dtype(features),
                    " (cast half/bfloat16 features to float32)");
  const int64_t B = features.size(0), C = features.size(1);
  TORCH_CHECK_VALUE(num_groups >= 1 && num_groups <= C, kOp,
                    ": num_groups must be in [1, C] = [1, ", C,
                    "] (K distinct channels start the groups), got ", num_groups);
  TORCH_CHECK_VALUE(max_iter >= 1, kOp, ": max_iter must be an int >= 1, got ", max_iter);
  TORCH_CHECK_VALUE(std::isfinite(shift_threshold) && shift_threshold >= 0, kOp,
                    ": shift_threshold must be a finite real >= 0, got ", shift_threshold);
  TORCH_CHECK_VALUE(base >= 0 && base <= int64_t(0xFFFFFFFF), kOp,
                    ": base must be a 32-bit counter key in [0, 2**32), got ", base,
                    " (robustops.ops.counter_rng.stream_base(seed, KMEANS_INIT_STREAM))");
  if (index.has_value()) {
    const at::Tensor& idx = *index;
    TORCH_CHECK_VALUE((idx.scalar_type() == at::kLong || idx.scalar_type() == at::kInt) &&
                          idx.dim() == 1 && idx.size(0) == B,
                      kOp, ": index must be an integer tensor of shape (", B, ",), got ",
                      py_shape(idx), " ", py_dtype(idx));
    TORCH_CHECK_VALUE(idx.device() == features.device(), kOp, ": index is on ", py_device(idx),
                      " but features are on ", py_device(features));
  }
  if (init.has_value()) {
    const at::Tensor& in = *init;
    TORCH_CHECK_VALUE(in.scalar_type() == at::kLong && in.dim() == 2 && in.size(0) == B &&
                          in.size(1) == num_groups,
                      kOp, ": init must be a (", B, ", ", num_groups,
                      ") int64 tensor of channel indices, got ", py_shape(in), " ",
                      py_dtype(in));
    TORCH_CHECK_VALUE(in.device() == features.device(), kOp, ": init is on ", py_device(in),
                      " but features are on ", py_device(features));
    check_init_values(in, C);  // the kernels are CPU kernels: a free read
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> channel_kmeans_run(
    const at::Tensor& features, const std::optional<at::Tensor>& init,
    const std::optional<at::Tensor>& index, int64_t base, int64_t num_groups, int64_t max_iter,
    double shift_threshold, bool reseed_farthest, ChannelKMeansKernel kernel) {
  check_channel_kmeans_args(features, init, index, base, num_groups, max_iter, shift_threshold);
  const int64_t B = features.size(0), C = features.size(1);
  const auto opts = features.options().dtype(at::kLong);
  at::Tensor assignment = at::empty({B, C}, opts);
  at::Tensor medoids = at::empty({B, num_groups}, opts);
  at::Tensor iterations = at::empty({B}, opts);
  if (B == 0) return {assignment, medoids, iterations};
  // Without init, the kernel draws the medoids itself (no extra parallel region: on a
  // busy machine every region can wait a scheduler tick for its second thread).
  const at::Tensor in = init.has_value() ? init->contiguous() : at::Tensor();
  const at::Tensor idx = index.has_value() ? index->to(at::kLong).contiguous() : at::Tensor();
  kernel(assignment, medoids, iterations, features.contiguous(), in, idx,
         static_cast<uint32_t>(base), max_iter, shift_threshold, reseed_farthest);
  return {assignment, medoids, iterations};
}

namespace {

// ------------------------------------------------------------------------ autograd

// No gradient (integer outputs): run the device kernel below autograd, so that a feature
// map that requires grad leaves no graph behind.
std::tuple<at::Tensor, at::Tensor, at::Tensor> channel_kmeans_autograd(
    const at::Tensor& features, const std::optional<at::Tensor>& init,
    const std::optional<at::Tensor>& index, int64_t base, int64_t num_groups, int64_t max_iter,
    double shift_threshold, bool reseed_farthest) {
  // Devices first: a mixed CPU/meta call would otherwise reach the Meta kernel. (The
  // rest is checked by the device kernel and the fake kernel; sizes may be symbolic here.)
  if (init.has_value()) {
    TORCH_CHECK_VALUE(init->device() == features.device(), kOp, ": init is on ",
                      py_device(*init), " but features are on ", py_device(features));
  }
  if (index.has_value()) {
    TORCH_CHECK_VALUE(index->device() == features.device(), kOp, ": index is on ",
                      py_device(*index), " but features are on ", py_device(features));
  }
  at::AutoDispatchBelowADInplaceOrView guard;
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("robustops::channel_kmeans", "")
                       .typed<decltype(channel_kmeans_autograd)>();
  return op.call(features, init, index, base, num_groups, max_iter, shift_threshold,
                 reseed_farthest);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(robustops, m) {
  m.set_python_module("robustops.ops.channel_kmeans");
  m.def("channel_kmeans(Tensor features, Tensor? init, Tensor? index, int base, int num_groups, "
        "int max_iter, float shift_threshold, bool reseed_farthest=False) -> "
        "(Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(robustops, Autograd, m) {
  m.impl("channel_kmeans", &channel_kmeans_autograd);
}

}  // namespace robustops
