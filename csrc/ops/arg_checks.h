// Argument checks shared by every op entry (CPU and CUDA kernels, autograd kernels):
// the error text spells shapes and dtypes as Python does ("(2, 3)", "torch.float32"),
// so a message reads the same whether it came from C++ or from robustops/ops/<op>.py.
// TORCH_CHECK_VALUE raises ValueError in Python, TORCH_CHECK_TYPE TypeError.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <charconv>
#include <cmath>
#include <optional>
#include <string>

namespace robustops {

// "(2, 3, 4)", "(5,)" or "()": a shape as Python's tuple() prints it.
inline std::string py_shape(c10::IntArrayRef sizes) {
  std::string s = "(";
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(sizes[i]);
  }
  if (sizes.size() == 1) s += ",";
  return s + ")";
}

inline std::string py_shape(const at::Tensor& t) { return py_shape(t.sizes()); }

// "torch.float32": a dtype as Python prints it.
inline std::string py_dtype(c10::ScalarType t) {
  switch (t) {
    case at::kFloat: return "torch.float32";
    case at::kDouble: return "torch.float64";
    case at::kHalf: return "torch.float16";
    case at::kBFloat16: return "torch.bfloat16";
    case at::kLong: return "torch.int64";
    case at::kInt: return "torch.int32";
    case at::kShort: return "torch.int16";
    case at::kChar: return "torch.int8";
    case at::kByte: return "torch.uint8";
    case at::kBool: return "torch.bool";
    case at::kComplexFloat: return "torch.complex64";
    case at::kComplexDouble: return "torch.complex128";
    default: return std::string("torch.") + c10::toString(t);
  }
}

inline std::string py_dtype(const at::Tensor& t) { return py_dtype(t.scalar_type()); }

// The device as Python prints it ("cpu", "cuda:0", "meta").
inline std::string py_device(const at::Tensor& t) { return t.device().str(); }

// `t` is on `ref`'s device, or a ValueError naming both.
inline void check_same_device(const char* op, const char* name, const at::Tensor& t,
                              const char* ref_name, const at::Tensor& ref) {
  TORCH_CHECK_VALUE(t.device() == ref.device(), op, ": ", name, " is on ", py_device(t),
                    " but ", ref_name, " is on ", py_device(ref), "; move it with ", name,
                    ".to(", ref_name, ".device)");
}

// `t` has `ref`'s shape, or a ValueError naming both.
inline void check_same_shape(const char* op, const char* name, const at::Tensor& t,
                             const char* ref_name, const at::Tensor& ref) {
  TORCH_CHECK_VALUE(t.sizes() == ref.sizes(), op, ": ", name, " has shape ", py_shape(t),
                    " but ", ref_name, " has ", py_shape(ref), "; they must match");
}

// A finite float >= 0, or a ValueError.
inline void check_non_negative(const char* op, const char* name, double v) {
  TORCH_CHECK_VALUE(std::isfinite(v) && v >= 0, op, ": ", name,
                    " must be finite and >= 0, got ", v);
}

// The defined tensor of an optional argument, or an undefined one.
inline at::Tensor or_undefined(const std::optional<at::Tensor>& t) {
  return t.has_value() ? *t : at::Tensor();
}

// "0.1", "1e-05", "-1.0", "nan", "inf": a float as Python's repr() prints it (the
// shortest string that reads back, fixed for exponents in [-4, 16), else scientific).
inline std::string py_float(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::scientific);
  std::string sci(buf, res.ptr);  // "-d.ddde+XX"
  const size_t e = sci.find('e');
  const int exp10 = std::stoi(sci.substr(e + 1));
  std::string sign, digits;
  for (size_t i = 0; i < e; ++i) {
    if (sci[i] == '-') sign = "-";
    else if (sci[i] != '.') digits += sci[i];
  }
  if (exp10 < -4 || exp10 >= 16) {
    std::string m = digits.substr(0, 1);
    if (digits.size() > 1) m += "." + digits.substr(1);
    const std::string ex = std::to_string(exp10 < 0 ? -exp10 : exp10);
    return sign + m + "e" + (exp10 < 0 ? "-" : "+") + (ex.size() < 2 ? "0" : "") + ex;
  }
  if (exp10 < 0) return sign + "0." + std::string(-exp10 - 1, '0') + digits;
  if (static_cast<int>(digits.size()) <= exp10 + 1) {
    return sign + digits + std::string(exp10 + 1 - digits.size(), '0') + ".0";
  }
  return sign + digits.substr(0, exp10 + 1) + "." + digits.substr(exp10 + 1);
}

}  // namespace robustops
