// aoti_runner: run an AOTInductor package (.pt2) from C++, without Python.
//
//   aoti_runner [--ops LIB.so]... [--model-name NAME] [--threads N]
//               --package MODEL.pt2 --out-dir DIR [--input FILE]...
//
// 1. dlopen()s every --ops library (RTLD_NOW | RTLD_GLOBAL), so the custom ops it
//    registers (TORCH_LIBRARY / TORCH_LIBRARY_IMPL static initialisers) exist in the
//    dispatcher before the package's proxy executor looks them up;
// 2. loads the package with torch::inductor::AOTIModelPackageLoader;
// 3. reads the model's flat inputs (--input, in order), runs the model once and
//    writes output i to DIR/output_<i>.bin; prints "outputs: N" on success.
//
// Tensor file format (all little-endian; written/read by tests/export/test_aoti_export.py):
//   bytes 0-3   magic "ROT1"
//   uint32      dtype code: 0 float32, 1 float64, 2 int64, 3 int32, 4 bool (1 byte), 5 uint8
//   uint32      ndim
//   int64[ndim] sizes
//   data        numel * itemsize bytes, C-contiguous
// Any error prints "aoti_runner: error: ..." to stderr and exits with a nonzero status:
// 2 bad arguments, 3 an --ops library failed to load, 4 an input file is bad,
// 5 loading or running the package failed, 6 writing an output failed.

#include <dlfcn.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "aoti_runner reads and writes little-endian tensor files on a little-endian host only"
#endif

namespace {

constexpr char kMagic[4] = {'R', 'O', 'T', '1'};
constexpr uint32_t kMaxDim = 16;

struct Failure : std::runtime_error {
  int code;
  Failure(int c, const std::string& msg) : std::runtime_error(msg), code(c) {}
};

struct DTypeEntry {
  uint32_t code;
  c10::ScalarType type;
  const char* name;
};

constexpr DTypeEntry kDTypes[] = {
    {0, c10::ScalarType::Float, "float32"}, {1, c10::ScalarType::Double, "float64"},
    {2, c10::ScalarType::Long, "int64"},    {3, c10::ScalarType::Int, "int32"},
    {4, c10::ScalarType::Bool, "bool"},     {5, c10::ScalarType::Byte, "uint8"},
};

c10::ScalarType dtype_of_code(uint32_t code, const std::string& path) {
  for (const auto& e : kDTypes)
    if (e.code == code) return e.type;
  throw Failure(4, path + ": unknown dtype code " + std::to_string(code) +
                       " (0 float32, 1 float64, 2 int64, 3 int32, 4 bool, 5 uint8)");
}

uint32_t code_of_dtype(c10::ScalarType t, const std::string& what) {
  for (const auto& e : kDTypes)
    if (e.type == t) return e.code;
  throw Failure(6, what + " has dtype " + std::string(c10::toString(t)) +
                       ", which the tensor file format does not carry");
}

void read_exact(std::ifstream& in, void* dst, size_t n, const std::string& path,
                const char* what) {
  in.read(static_cast<char*>(dst), static_cast<std::streamsize>(n));
  if (static_cast<size_t>(in.gcount()) != n)
    throw Failure(4, path + ": file ends inside the " + what + " (truncated or not a tensor file)");
}

at::Tensor read_tensor(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Failure(4, "cannot open input file " + path);
  char magic[4];
  read_exact(in, magic, 4, path, "header");
  if (std::memcmp(magic, kMagic, 4) != 0)
    throw Failure(4, path + ": not a tensor file (magic is not \"ROT1\")");
  uint32_t code = 0, ndim = 0;
  read_exact(in, &code, 4, path, "header");
  read_exact(in, &ndim, 4, path, "header");
  c10::ScalarType type = dtype_of_code(code, path);
  if (ndim > kMaxDim)
    throw Failure(4, path + ": ndim " + std::to_string(ndim) + " is over " +
                         std::to_string(kMaxDim) + " (corrupt header?)");
  std::vector<int64_t> sizes(ndim);
  if (ndim) read_exact(in, sizes.data(), sizeof(int64_t) * ndim, path, "sizes");
  for (uint32_t d = 0; d < ndim; ++d)
    if (sizes[d] < 0)
      throw Failure(4, path + ": negative size " + std::to_string(sizes[d]) + " in dim " +
                           std::to_string(d));
  at::Tensor t = at::empty(sizes, at::TensorOptions().dtype(type));
  size_t nbytes = t.nbytes();
  if (nbytes) read_exact(in, t.data_ptr(), nbytes, path, "data");
  char extra;
  if (in.read(&extra, 1); in.gcount() != 0)
    throw Failure(4, path + ": trailing bytes after the " + std::to_string(nbytes) +
                         " data bytes the header announces");
  return t;
}

void write_tensor(const at::Tensor& value, const std::string& path, const std::string& what) {
  uint32_t code = code_of_dtype(value.scalar_type(), what);
  at::Tensor t = value.to(at::kCPU).contiguous();
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw Failure(6, "cannot create output file " + path);
  uint32_t ndim = static_cast<uint32_t>(t.dim());
  out.write(kMagic, 4);
  out.write(reinterpret_cast<const char*>(&code), 4);
  out.write(reinterpret_cast<const char*>(&ndim), 4);
  for (int64_t s : t.sizes()) out.write(reinterpret_cast<const char*>(&s), sizeof(s));
  if (t.nbytes())
    out.write(static_cast<const char*>(t.const_data_ptr()),
              static_cast<std::streamsize>(t.nbytes()));
  out.flush();
  if (!out) throw Failure(6, "failed writing " + path + " (disk full?)");
}

std::string describe(const at::Tensor& t) {
  std::ostringstream s;
  s << c10::toString(t.scalar_type()) << t.sizes();
  return s.str();
}

void usage(std::ostream& os) {
  os << "usage: aoti_runner [--ops LIB.so]... [--model-name NAME] [--threads N]\n"
        "                   --package MODEL.pt2 --out-dir DIR [--input FILE]...\n"
        "Loads each --ops shared library (RTLD_NOW|RTLD_GLOBAL) so its custom ops register,\n"
        "runs the AOTInductor package on the inputs (tensor files, in the model's flat input\n"
        "order) and writes DIR/output_<i>.bin. Tensor file: \"ROT1\", uint32 dtype code,\n"
        "uint32 ndim, int64 sizes[ndim], raw little-endian data.\n";
}

struct Args {
  std::vector<std::string> ops, inputs;
  std::string package, out_dir, model_name = "model";
  int threads = 0;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "-h" || flag == "--help") {
      usage(std::cout);
      std::exit(0);
    }
    if (i + 1 >= argc) throw Failure(2, "option " + flag + " needs a value");
    std::string v = argv[++i];
    if (flag == "--ops") a.ops.push_back(v);
    else if (flag == "--input") a.inputs.push_back(v);
    else if (flag == "--package") a.package = v;
    else if (flag == "--out-dir") a.out_dir = v;
    else if (flag == "--model-name") a.model_name = v;
    else if (flag == "--threads") {
      try {
        a.threads = std::stoi(v);
      } catch (const std::exception&) {
        throw Failure(2, "--threads needs an integer, got " + v);
      }
      if (a.threads < 1) throw Failure(2, "--threads must be >= 1, got " + v);
    } else
      throw Failure(2, "unknown option " + flag);
  }
  if (a.package.empty()) throw Failure(2, "--package MODEL.pt2 is required");
  if (a.out_dir.empty()) throw Failure(2, "--out-dir DIR is required");
  return a;
}

int run(const Args& a) {
  for (const auto& lib : a.ops) {
    // Keep the handle open for the life of the process: the registrations live in it.
    if (dlopen(lib.c_str(), RTLD_NOW | RTLD_GLOBAL) == nullptr) {
      const char* err = dlerror();
      throw Failure(3, "cannot load ops library " + lib + ": " + (err ? err : "unknown dlerror"));
    }
    std::cerr << "aoti_runner: loaded ops library " << lib << "\n";
  }
  if (a.threads > 0) at::set_num_threads(a.threads);

  std::vector<at::Tensor> inputs;
  for (const auto& path : a.inputs) inputs.push_back(read_tensor(path));

  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader;
  try {
    loader = std::make_unique<torch::inductor::AOTIModelPackageLoader>(a.package, a.model_name);
  } catch (const c10::Error& e) {
    throw Failure(5, "cannot load package " + a.package + " (model name \"" + a.model_name +
                         "\"): " + e.what_without_backtrace());
  } catch (const std::exception& e) {
    throw Failure(5, "cannot load package " + a.package + " (model name \"" + a.model_name +
                         "\"): " + e.what());
  }

  std::vector<at::Tensor> outputs;
  auto run_failed = [&](const std::string& why) {
    std::ostringstream s;
    s << "running package " << a.package << " on " << inputs.size() << " input(s) (";
    for (size_t i = 0; i < inputs.size(); ++i) s << (i ? ", " : "") << describe(inputs[i]);
    s << ") failed: " << why;
    return Failure(5, s.str());
  };
  try {
    outputs = loader->run(inputs);
  } catch (const c10::Error& e) {
    throw run_failed(e.what_without_backtrace());
  } catch (const std::exception& e) {
    throw run_failed(e.what());
  }

  for (size_t i = 0; i < outputs.size(); ++i) {
    std::string path = a.out_dir + "/output_" + std::to_string(i) + ".bin";
    write_tensor(outputs[i], path, "output " + std::to_string(i));
  }
  std::cout << "outputs: " << outputs.size() << "\n";
  for (size_t i = 0; i < outputs.size(); ++i)
    std::cout << "  output_" << i << ": " << describe(outputs[i]) << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse(argc, argv));
  } catch (const Failure& f) {
    std::cerr << "aoti_runner: error: " << f.what() << "\n";
    if (f.code == 2) usage(std::cerr);
    return f.code;
  } catch (const c10::Error& e) {
    std::cerr << "aoti_runner: error: " << e.what_without_backtrace() << "\n";
    return 5;
  } catch (const std::exception& e) {
    std::cerr << "aoti_runner: error: " << e.what() << "\n";
    return 5;
  }
}
