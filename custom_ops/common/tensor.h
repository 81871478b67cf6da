// The tensors of the ops' Compute signatures: an input's data and shape, an output allocated on
// demand. Bound to a run by the kernel adapter (kernel_adapter.h), which reuses them from run to
// run, so a run allocates nothing here once the shapes' capacity is reached.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "ort_api.h"

namespace qcompile {

// The element type onnxruntime is told for a Compute argument of Tensor<T>.
template <typename T>
struct OnnxType;
template <>
struct OnnxType<float> {
  static constexpr ONNXTensorElementDataType kValue = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
};
template <>
struct OnnxType<int8_t> {
  static constexpr ONNXTensorElementDataType kValue = ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8;
};
template <>
struct OnnxType<uint8_t> {
  static constexpr ONNXTensorElementDataType kValue = ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8;
};
template <>
struct OnnxType<int32_t> {
  static constexpr ONNXTensorElementDataType kValue = ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32;
};
template <>
struct OnnxType<int64_t> {
  static constexpr ONNXTensorElementDataType kValue = ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64;
};
template <>
struct OnnxType<uint64_t> {
  static constexpr ONNXTensorElementDataType kValue = ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT64;
};

// What the adapter and io_characteristics.h recognise as a tensor argument.
class TensorArg {};

// Throws the message of a failed C API call (the adapter turns it into the run's status).
inline void ThrowIfFailed(OrtStatus* st) {
  if (!st) return;
  std::string msg = Ort::GetApi().GetErrorMessage(st);
  Ort::GetApi().ReleaseStatus(st);
  throw std::runtime_error(msg);
}

template <typename T>
class Tensor : public TensorArg {
 public:
  const std::vector<int64_t>& Shape() const { return shape_; }
  const T* Data() const { return in_; }
  // The output's data, allocated by onnxruntime at the first call (later calls return it).
  T* Allocate(const std::vector<int64_t>& shape) {
    if (!out_) {
      OrtValue* v = nullptr;
      ThrowIfFailed(Ort::GetApi().KernelContext_GetOutput(ctx_, index_, shape.data(), shape.size(), &v));
      void* p = nullptr;
      ThrowIfFailed(Ort::GetApi().GetTensorMutableData(v, &p));
      out_ = static_cast<T*>(p);
      shape_ = shape;
    }
    return out_;
  }

  // Input `index` of this run; false when the node omits it (a null value).
  bool BindInput(OrtKernelContext* ctx, size_t index) {
    const OrtApi& api = Ort::GetApi();
    const OrtValue* v = nullptr;
    ThrowIfFailed(api.KernelContext_GetInput(ctx, index, &v));
    if (!v) return false;
    OrtTensorTypeAndShapeInfo* info = nullptr;
    ThrowIfFailed(api.GetTensorTypeAndShape(v, &info));
    size_t rank = 0;
    OrtStatus* st = api.GetDimensionsCount(info, &rank);
    if (!st) {
      shape_.resize(rank);
      st = api.GetDimensions(info, shape_.data(), rank);
    }
    api.ReleaseTensorTypeAndShapeInfo(info);
    ThrowIfFailed(st);
    void* p = nullptr;
    ThrowIfFailed(api.GetTensorMutableData(const_cast<OrtValue*>(v), &p));
    in_ = static_cast<const T*>(p);
    return true;
  }
  void BindOutput(OrtKernelContext* ctx, size_t index) {
    ctx_ = ctx;
    index_ = index;
    out_ = nullptr;
    shape_.clear();
  }

 private:
  OrtKernelContext* ctx_ = nullptr;
  size_t index_ = 0;
  const T* in_ = nullptr;
  T* out_ = nullptr;
  std::vector<int64_t> shape_;
};

}  // namespace qcompile
