// CPU kernels of gabor_bank: at::parallel_for over filters, the math of kernels/gabor_bank.h;
// registered as the ops' CPU kernels (schema and checks: csrc/ops/gabor_bank.cpp).
#include "gabor_bank.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include <kernels/gabor_bank.h>

#include "cpu/target_clones.h"

namespace robustops {
namespace {

using namespace kernels;

// Filters per task: a filter is k*k exp+cos evaluations (~25 us at k = 25),
// so small banks still split across threads.
int64_t filter_grain(int64_t kk) { return std::max<int64_t>(1, 4096 / std::max<int64_t>(kk, 1)); }

template <typename scalar_t>
GaborCoeffs<double> coeffs_of(const scalar_t* f, const scalar_t* sx, const scalar_t* sy,
                              const scalar_t* th, const scalar_t* ph, int64_t i) {
  return gabor_coeffs<double>(f[i], sx[i], sy[i], th[i], ph[i]);
}

// One filter: k rows of k values. Every call in the row is inlined (vm_exp, vm_cos); GCC
// still keeps this short row loop scalar (objdump of the avx2 clone: no ymm).
template <typename scalar_t>
RO_CPU_CLONES void fill_filter(scalar_t* __restrict__ out, const GaborCoeffs<double>& c,
                               int64_t k, int64_t w) {
  for (int64_t r = 0; r < k; ++r) {
    const double x = gabor_offset<double>(r, w);
    scalar_t* __restrict__ row = out + r * k;
#pragma omp simd
    for (int64_t col = 0; col < k; ++col) {
      row[col] = static_cast<scalar_t>(gabor_element(c, x, gabor_offset<double>(col, w)));
    }
  }
}

}  // namespace

void gabor_bank_cpu(at::Tensor& out, const at::Tensor& frequency, const at::Tensor& sigma_x,
                    const at::Tensor& sigma_y, const at::Tensor& theta, const at::Tensor& phase) {
  const int64_t n = out.size(0), k = out.size(1), kk = k * k, w = k / 2;
  if (out.numel() == 0) return;
  AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "gabor_bank_cpu", [&] {
    const scalar_t* f = frequency.const_data_ptr<scalar_t>();
    const scalar_t* sx = sigma_x.const_data_ptr<scalar_t>();
    const scalar_t* sy = sigma_y.const_data_ptr<scalar_t>();
    const scalar_t* th = theta.const_data_ptr<scalar_t>();
    const scalar_t* ph = phase.const_data_ptr<scalar_t>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, n, filter_grain(kk), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        fill_filter(o + i * kk, coeffs_of(f, sx, sy, th, ph, i), k, w);
      }
    });
  });
}

void gabor_bank_backward_cpu(const at::Tensor& grad_out, const at::Tensor& frequency,
                             const at::Tensor& sigma_x, const at::Tensor& sigma_y,
                             const at::Tensor& theta, const at::Tensor& phase,
                             at::Tensor& grad_frequency, at::Tensor& grad_sigma_x,
                             at::Tensor& grad_sigma_y, at::Tensor& grad_theta,
                             at::Tensor& grad_phase) {
  const int64_t n = grad_out.size(0), k = grad_out.size(1), kk = k * k, w = k / 2;
  if (n == 0) return;
  AT_DISPATCH_FLOATING_TYPES(grad_out.scalar_type(), "gabor_bank_backward_cpu", [&] {
    const scalar_t* f = frequency.const_data_ptr<scalar_t>();
    const scalar_t* sx = sigma_x.const_data_ptr<scalar_t>();
    const scalar_t* sy = sigma_y.const_data_ptr<scalar_t>();
    const scalar_t* th = theta.const_data_ptr<scalar_t>();
    const scalar_t* ph = phase.const_data_ptr<scalar_t>();
    const scalar_t* go = grad_out.const_data_ptr<scalar_t>();
    scalar_t* gf = grad_frequency.mutable_data_ptr<scalar_t>();
    scalar_t* gsx = grad_sigma_x.mutable_data_ptr<scalar_t>();
    scalar_t* gsy = grad_sigma_y.mutable_data_ptr<scalar_t>();
    scalar_t* gth = grad_theta.mutable_data_ptr<scalar_t>();
    scalar_t* gph = grad_phase.mutable_data_ptr<scalar_t>();
    // One filter per iteration: its five sums over k*k elements stay in registers.
    at::parallel_for(0, n, filter_grain(kk), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const GaborCoeffs<double> c = coeffs_of(f, sx, sy, th, ph, i);
        const scalar_t* goi = go + i * kk;
        GaborGrad<double> acc{0, 0, 0, 0, 0};
        for (int64_t r = 0; r < k; ++r) {
          const double x = gabor_offset<double>(r, w);
          for (int64_t col = 0; col < k; ++col) {
            gabor_grad_accumulate(c, x, gabor_offset<double>(col, w),
                                  static_cast<double>(goi[r * k + col]), acc);
          }
        }
        gf[i] = static_cast<scalar_t>(acc.f);
        gsx[i] = static_cast<scalar_t>(acc.sx);
        gsy[i] = static_cast<scalar_t>(acc.sy);
        gth[i] = static_cast<scalar_t>(acc.theta);
        gph[i] = static_cast<scalar_t>(acc.phase);
      }
    });
  });
}

TORCH_LIBRARY_IMPL(robustops, CPU, m) {
  m.impl("gabor_bank", TORCH_FN(gabor_bank_op<&gabor_bank_cpu>));
  m.impl("gabor_bank_backward", TORCH_FN(gabor_bank_backward_op<&gabor_bank_backward_cpu>));
}

}  // namespace robustops
