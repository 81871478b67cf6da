// A C++ host of libqcompile_ops.so: load a compiled model, run it on one input and print every
// output. Built by `cmake -DQCOMPILE_BUILD_EXAMPLES=ON` (cmake/OrtLibrary.cmake links the
// onnxruntime wheel's libonnxruntime and sets the RPATH).
//
//   qcompile_host MODEL.q.onnx LIBQCOMPILE_OPS.so INPUT.f32 DIM[xDIM...]
//
// INPUT.f32: the model's first input as raw little-endian float32, row-major, of shape
// DIM x DIM x ... (e.g. 1x1x28x28); numpy writes one with `x.astype("<f4").tofile(path)`.
// Output, per model output: `output NAME shape D0xD1...` then one value per line, printed with
// 9 significant digits so that it reads back as the same float32.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "onnxruntime_cxx_api.h"

namespace {

// "1x3x8x8" -> {1, 3, 8, 8}; empty on a malformed shape.
std::vector<int64_t> ParseShape(const std::string& text) {
  std::vector<int64_t> shape;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t end = text.find('x', start);
    const std::string part = text.substr(start, end == std::string::npos ? std::string::npos : end - start);
    char* rest = nullptr;
    const long long dim = std::strtoll(part.c_str(), &rest, 10);
    if (part.empty() || *rest != '\0' || dim < 1) return {};
    shape.push_back(dim);
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return shape;
}

bool ReadFloats(const char* path, size_t count, std::vector<float>* out) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return false;
  if (static_cast<size_t>(in.tellg()) != count * sizeof(float)) return false;
  out->resize(count);
  in.seekg(0);
  return static_cast<bool>(in.read(reinterpret_cast<char*>(out->data()), count * sizeof(float)));
}

void PrintOutput(const char* name, const Ort::Value& value) {
  const auto info = value.GetTensorTypeAndShapeInfo();
  const std::vector<int64_t> shape = info.GetShape();
  std::printf("output %s shape ", name);
  for (size_t i = 0; i < shape.size(); ++i) std::printf(i ? "x%lld" : "%lld", static_cast<long long>(shape[i]));
  std::printf("\n");
  if (info.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) {
    std::printf("(element type %d: not printed)\n", static_cast<int>(info.GetElementType()));
    return;
  }
  const float* data = value.GetTensorData<float>();
  for (size_t i = 0; i < info.GetElementCount(); ++i) std::printf("%.9g\n", data[i]);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s MODEL.onnx LIBQCOMPILE_OPS.so INPUT.f32 DIM[xDIM...]\n", argv[0]);
    return 2;
  }
  const std::vector<int64_t> shape = ParseShape(argv[4]);
  if (shape.empty()) {
    std::fprintf(stderr, "error: expected a shape like 1x3x8x8, got '%s'\n", argv[4]);
    return 2;
  }
  size_t count = 1;
  for (int64_t d : shape) count *= static_cast<size_t>(d);
  std::vector<float> input;
  if (!ReadFloats(argv[3], count, &input)) {
    std::fprintf(stderr, "error: expected %s to hold %zu float32 values (%zu bytes) for shape %s\n",
                 argv[3], count, count * sizeof(float), argv[4]);
    return 2;
  }
  try {
    Ort::Env env(ORT_LOGGING_LEVEL_ERROR, "qcompile_host");
    Ort::SessionOptions options;
    options.SetIntraOpNumThreads(1);
    options.RegisterCustomOpsLibrary(argv[2]);  // the op library; ORT calls its RegisterCustomOps
    Ort::Session session(env, argv[1], options);
    Ort::AllocatorWithDefaultOptions alloc;
    const Ort::AllocatedStringPtr input_name = session.GetInputNameAllocated(0, alloc);
    std::vector<Ort::AllocatedStringPtr> output_names;
    std::vector<const char*> output_ptrs;
    for (size_t i = 0; i < session.GetOutputCount(); ++i) {
      output_names.push_back(session.GetOutputNameAllocated(i, alloc));
      output_ptrs.push_back(output_names.back().get());
    }
    const Ort::MemoryInfo cpu = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
    Ort::Value x = Ort::Value::CreateTensor<float>(cpu, input.data(), input.size(), shape.data(), shape.size());
    const char* input_ptr = input_name.get();
    std::vector<Ort::Value> outputs =
        session.Run(Ort::RunOptions{nullptr}, &input_ptr, &x, 1, output_ptrs.data(), output_ptrs.size());
    for (size_t i = 0; i < outputs.size(); ++i) PrintOutput(output_ptrs[i], outputs[i]);
  } catch (const Ort::Exception& e) {
    std::fprintf(stderr, "onnxruntime error: %s\n", e.what());
    return 1;
  }
  return 0;
}
