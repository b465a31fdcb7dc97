// gabor_bank: the op's schema, argument and value checks, the layout handling shared by
// the CPU and CUDA kernels, and the autograd kernel (whose backward is the op
// gabor_bank_backward, with its own CPU and CUDA kernels). The kernels:
// csrc/cpu/gabor_bank.cpp, csrc/cuda/gabor_bank.cu (math in kernels/gabor_bank.h); the
// fake kernels and the plain-PyTorch reference: robustops/ops/gabor_bank.py.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <array>
#include <cmath>

#include "gabor_bank.h"
#include "ops/arg_checks.h"

namespace robustops {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace {

constexpr const char* kNames[5] = {"frequency", "sigma_x", "sigma_y", "theta", "phase"};
using Params = std::array<const at::Tensor*, 5>;

void check_device(const Params& p, int i) {
  TORCH_CHECK_VALUE(p[i]->device() == p[0]->device(), "gabor_bank: ", kNames[i], " is on ",
                    py_device(*p[i]), " but frequency is on ", py_device(*p[0]),
                    "; the parameters must share one device");
}

void check_devices(const Params& p) {
  for (int i = 1; i < 5; ++i) check_device(p, i);
}

// The checks of robustops/ops/gabor_bank.py's _validate, in its order.
void check_args(const Params& p, int64_t ksize) {
  for (int i = 0; i < 5; ++i) {
    const at::Tensor& t = *p[i];
    TORCH_CHECK_VALUE(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble,
                      "gabor_bank: ", kNames[i], " has dtype ", py_dtype(t),
                      "; the parameters must be float32 or float64 (the filters get their "
                      "dtype)");
    TORCH_CHECK_VALUE(t.dim() == 1, "gabor_bank: ", kNames[i],
                      " must be 1-D (F,), one value per filter, got shape ", py_shape(t));
  }
  const at::Tensor& first = *p[0];
  for (int i = 1; i < 5; ++i) {
    const at::Tensor& t = *p[i];
    TORCH_CHECK_VALUE(t.size(0) == first.size(0), "gabor_bank: ", kNames[i], " has ",
                      t.size(0), " values but frequency has ", first.size(0),
                      "; every parameter needs one value per filter");
    TORCH_CHECK_VALUE(t.scalar_type() == first.scalar_type(), "gabor_bank: ", kNames[i],
                      " has dtype ", py_dtype(t), " but frequency has ", py_dtype(first),
                      "; the parameters must share one dtype");
    check_device(p, i);
  }
  TORCH_CHECK_VALUE(ksize >= 1 && ksize % 2 == 1,
                    "gabor_bank: ksize must be an odd int >= 1 (the filter is centred on a "
                    "pixel), got ", ksize);
}

bool is_sigma(int i) { return i == 1 || i == 2; }

[[noreturn]] void bad_value(int i, int64_t first_bad, double value, int64_t count, int64_t n) {
  TORCH_CHECK_VALUE(false, "gabor_bank: ", kNames[i], " must be ",
                    is_sigma(i) ? "finite and > 0" : "finite", "; ", kNames[i], "[", first_bad,
                    "] = ", py_float(value), " (", count, " of ", n, " values are bad)");
  __builtin_unreachable();
}

// Finite parameters and sigma > 0. On the CPU the values are read in place; elsewhere
// one flag is read back (a small sync per bank: a bank is built once per model, or
// once per step when learned), which gives a clear ValueError where an asynchronous
// device assert would poison the CUDA context.
void check_values(const Params& p) {
  if (p[0]->is_cpu()) {
    for (int i = 0; i < 5; ++i) {
      const at::Tensor& t = *p[i];
      AT_DISPATCH_FLOATING_TYPES(t.scalar_type(), "gabor_bank_check", [&] {
        const scalar_t* d = t.const_data_ptr<scalar_t>();
        const int64_t n = t.size(0), s = t.stride(0);
        const bool sigma = is_sigma(i);
        int64_t count = 0, first_bad = -1;
        for (int64_t j = 0; j < n; ++j) {
          const double v = static_cast<double>(d[j * s]);
          const bool bad = !std::isfinite(v) || (sigma && !(v > 0));
          if (bad && first_bad < 0) first_bad = j;
          count += bad;
        }
        if (count) bad_value(i, first_bad, static_cast<double>(d[first_bad * s]), count, n);
      });
    }
    return;
  }
  at::Tensor ok = at::isfinite(at::stack({*p[0], *p[1], *p[2], *p[3], *p[4]})).all();
  ok = ok.logical_and(p[1]->gt(0).all()).logical_and(p[2]->gt(0).all());
  if (ok.item<bool>()) return;
  for (int i = 0; i < 5; ++i) {
    const at::Tensor& t = *p[i];
    at::Tensor bad = at::isfinite(t).logical_not();
    if (is_sigma(i)) bad = bad.logical_or(t.le(0));
    const int64_t count = bad.sum().item<int64_t>();
    if (count) {
      const int64_t j = bad.nonzero()[0][0].item<int64_t>();
      bad_value(i, j, t[j].item<double>(), count, t.numel());
    }
  }
}

}  // namespace

at::Tensor gabor_bank_run(const at::Tensor& frequency, const at::Tensor& sigma_x,
                          const at::Tensor& sigma_y, const at::Tensor& theta,
                          const at::Tensor& phase, int64_t ksize, GaborBankKernel kernel) {
  const Params p{&frequency, &sigma_x, &sigma_y, &theta, &phase};
  check_args(p, ksize);
  check_values(p);
  at::Tensor out = at::empty({frequency.size(0), ksize, ksize}, frequency.options());
  kernel(out, frequency.contiguous(), sigma_x.contiguous(), sigma_y.contiguous(),
         theta.contiguous(), phase.contiguous());
  return out;
}

GaborGrads gabor_bank_backward_run(const at::Tensor& grad_out, const at::Tensor& frequency,
                                   const at::Tensor& sigma_x, const at::Tensor& sigma_y,
                                   const at::Tensor& theta, const at::Tensor& phase,
                                   GaborBankBackwardKernel kernel) {
  const Params p{&frequency, &sigma_x, &sigma_y, &theta, &phase};
  TORCH_CHECK_VALUE(grad_out.dim() == 3 && grad_out.size(1) == grad_out.size(2),
                    "gabor_bank_backward: grad_out must be (F, k, k), got shape ",
                    py_shape(grad_out));
  check_args(p, grad_out.size(2));
  TORCH_CHECK_VALUE(grad_out.size(0) == frequency.size(0),
                    "gabor_bank_backward: grad_out has ", grad_out.size(0),
                    " filters but frequency has ", frequency.size(0));
  TORCH_CHECK_VALUE(grad_out.device() == frequency.device(), "gabor_bank_backward: grad_out is on ",
                    py_device(grad_out), " but frequency is on ", py_device(frequency));
  TORCH_CHECK_TYPE(grad_out.is_floating_point(), "gabor_bank_backward: grad_out has dtype ",
                   py_dtype(grad_out), "; it must be floating point");
  const at::Tensor go = grad_out.to(frequency.scalar_type()).contiguous();
  std::array<at::Tensor, 5> g;
  for (auto& t : g) t = at::empty_like(frequency, at::MemoryFormat::Contiguous);
  kernel(go, frequency.contiguous(), sigma_x.contiguous(), sigma_y.contiguous(),
         theta.contiguous(), phase.contiguous(), g[0], g[1], g[2], g[3], g[4]);
  return {g[0], g[1], g[2], g[3], g[4]};
}

namespace {

// ------------------------------------------------------------------------ autograd

at::Tensor call_gabor_bank(const at::Tensor& frequency, const at::Tensor& sigma_x,
                           const at::Tensor& sigma_y, const at::Tensor& theta,
                           const at::Tensor& phase, int64_t ksize) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("robustops::gabor_bank", "")
                       .typed<decltype(call_gabor_bank)>();
  return op.call(frequency, sigma_x, sigma_y, theta, phase, ksize);
}

GaborGrads call_gabor_bank_backward(const at::Tensor& grad_out, const at::Tensor& frequency,
                                    const at::Tensor& sigma_x, const at::Tensor& sigma_y,
                                    const at::Tensor& theta, const at::Tensor& phase) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("robustops::gabor_bank_backward", "")
                       .typed<decltype(call_gabor_bank_backward)>();
  return op.call(grad_out, frequency, sigma_x, sigma_y, theta, phase);
}

class GaborBankFunction : public torch::autograd::Function<GaborBankFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& frequency,
                            const at::Tensor& sigma_x, const at::Tensor& sigma_y,
                            const at::Tensor& theta, const at::Tensor& phase, int64_t ksize) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({frequency, sigma_x, sigma_y, theta, phase});
    return call_gabor_bank(frequency, sigma_x, sigma_y, theta, phase, ksize);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto s = ctx->get_saved_variables();
    auto [gf, gsx, gsy, gth, gph] =
        call_gabor_bank_backward(grad_outputs[0], s[0], s[1], s[2], s[3], s[4]);
    return {gf, gsx, gsy, gth, gph, at::Tensor()};  // ksize gets no gradient
  }
};

at::Tensor gabor_bank_autograd(const at::Tensor& frequency, const at::Tensor& sigma_x,
                               const at::Tensor& sigma_y, const at::Tensor& theta,
                               const at::Tensor& phase, int64_t ksize) {
  // Devices first: a mixed CPU/meta call would otherwise reach the Meta kernel. (The
  // rest is checked by the device kernels and the fake kernel; sizes may be symbolic here.)
  check_devices({&frequency, &sigma_x, &sigma_y, &theta, &phase});
  if (at::GradMode::is_enabled() &&
      (frequency.requires_grad() || sigma_x.requires_grad() || sigma_y.requires_grad() ||
       theta.requires_grad() || phase.requires_grad())) {
    return GaborBankFunction::apply(frequency, sigma_x, sigma_y, theta, phase, ksize);
  }
  at::AutoDispatchBelowADInplaceOrView guard;
  return call_gabor_bank(frequency, sigma_x, sigma_y, theta, phase, ksize);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(robustops, m) {
  m.set_python_module("robustops.ops.gabor_bank");
  m.def("gabor_bank(Tensor frequency, Tensor sigma_x, Tensor sigma_y, Tensor theta, "
        "Tensor phase, int ksize) -> Tensor");
  m.def("gabor_bank_backward(Tensor grad_out, Tensor frequency, Tensor sigma_x, "
        "Tensor sigma_y, Tensor theta, Tensor phase) -> (Tensor, Tensor, Tensor, Tensor, "
        "Tensor)");
}

TORCH_LIBRARY_IMPL(robustops, Autograd, m) {
  m.impl("gabor_bank", &gabor_bank_autograd);
}

}  // namespace robustops
