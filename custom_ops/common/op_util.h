// Helpers shared by every op: shape strings, error statuses, attribute parsing and a
// lambda-friendly wrapper over ORT's intra-op thread pool.
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "ort_api.h"
#include "tensor.h"

namespace qcompile {

// Thrown by op code for a bad input or attribute; Compute turns it into an ORT error status.
class OpError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

inline std::string ShapeStr(const std::vector<int64_t>& shape) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << "]";
  return os.str();
}

// Builds a message from stream pieces: Fail(op, "input X: expected ", a, ", got ", b).
template <typename... Parts>
[[noreturn]] void Fail(const std::string& op, const Parts&... parts) {
  std::ostringstream os;
  os << op << ": ";
  (os << ... << parts);
  throw OpError(os.str());
}

// Runs `body`, turning any exception into an error status (exceptions never cross into ORT).
template <typename Body>
Ort::Status GuardCompute(const std::string& op, Body&& body) noexcept {
  try {
    body();
    return Ort::Status{nullptr};
  } catch (const OpError& e) {
    return Ort::Status(e.what(), ORT_INVALID_ARGUMENT);
  } catch (const Ort::Exception& e) {
    return Ort::Status((op + ": " + e.what()).c_str(), e.GetOrtErrorCode());
  } catch (const std::exception& e) {
    return Ort::Status((op + ": " + e.what()).c_str(), ORT_FAIL);
  } catch (...) {
    return Ort::Status((op + ": unknown error").c_str(), ORT_FAIL);
  }
}

// Attribute access through the C API so that a missing attribute gives its default and a
// present attribute of the wrong type is an error (never silently defaulted).
class Attrs {
 public:
  Attrs(const OrtApi* api, const OrtKernelInfo* info, std::string op)
      : api_(api), info_(info), op_(std::move(op)) {}

  int64_t Int(const char* name, int64_t dflt) const {
    int64_t v = 0;
    if (Present(name, api_->KernelInfoGetAttribute_int64(info_, name, &v), "int")) return v;
    return dflt;
  }

  float Float(const char* name, float dflt) const {
    float v = 0;
    if (Present(name, api_->KernelInfoGetAttribute_float(info_, name, &v), "float")) return v;
    return dflt;
  }

  std::vector<int64_t> Ints(const char* name, std::vector<int64_t> dflt) const {
    size_t n = 0;
    if (!Present(name, api_->KernelInfoGetAttributeArray_int64(info_, name, nullptr, &n), "ints"))
      return dflt;
    std::vector<int64_t> v(n);
    if (n) Check(name, api_->KernelInfoGetAttributeArray_int64(info_, name, v.data(), &n), "ints");
    return v;
  }

  std::vector<float> Floats(const char* name, std::vector<float> dflt) const {
    size_t n = 0;
    if (!Present(name, api_->KernelInfoGetAttributeArray_float(info_, name, nullptr, &n),
                 "floats"))
      return dflt;
    std::vector<float> v(n);
    if (n) Check(name, api_->KernelInfoGetAttributeArray_float(info_, name, v.data(), &n), "floats");
    return v;
  }

  std::string String(const char* name, std::string dflt) const {
    size_t n = 0;
    if (!Present(name, api_->KernelInfoGetAttribute_string(info_, name, nullptr, &n), "string"))
      return dflt;
    std::string v(n, '\0');
    Check(name, api_->KernelInfoGetAttribute_string(info_, name, v.data(), &n), "string");
    while (!v.empty() && v.back() == '\0') v.pop_back();
    return v;
  }

 private:
  // true if present; false if absent; throws if present with another type.
  bool Present(const char* name, OrtStatus* st, const char* type) const {
    if (!st) return true;
    std::string msg = api_->GetErrorMessage(st);
    api_->ReleaseStatus(st);
    if (msg.find("No attribute") != std::string::npos) return false;
    Fail(op_, "attribute '", name, "': expected type ", type, " (", msg, ")");
  }
  void Check(const char* name, OrtStatus* st, const char* type) const {
    if (!st) return;
    std::string msg = api_->GetErrorMessage(st);
    api_->ReleaseStatus(st);
    Fail(op_, "attribute '", name, "': expected type ", type, " (", msg, ")");
  }

  const OrtApi* api_;
  const OrtKernelInfo* info_;
  std::string op_;
};

// "qcompile::XnorConv (node 'conv3')": the prefix of every message an op reports.
inline std::string OpLabel(const OrtApi* api, const OrtKernelInfo* info, const char* op) {
  std::string label = op;
  size_t n = 0;
  OrtStatus* st = api->KernelInfo_GetNodeName(info, nullptr, &n);
  if (st) {
    api->ReleaseStatus(st);
    return label;
  }
  std::string name(n, '\0');
  st = api->KernelInfo_GetNodeName(info, name.data(), &n);
  if (st) {
    api->ReleaseStatus(st);
    return label;
  }
  while (!name.empty() && name.back() == '\0') name.pop_back();
  if (!name.empty()) label += " (node '" + name + "')";
  return label;
}

// The tensor types of the ops' Compute signatures.
using F32Tensor = Tensor<float>;
using I32Tensor = Tensor<int32_t>;
using U8Tensor = Tensor<uint8_t>;
using U64Tensor = Tensor<uint64_t>;

inline int64_t NumElements(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// Node arity and tensor shape checks shared by the ops.
inline void CheckNodeArity(const OrtApi* api, const OrtKernelInfo* info, const std::string& op,
                    size_t inputs, size_t outputs) {
  size_t n_in = 0, n_out = 0;
  Ort::ThrowOnError(api->KernelInfo_GetInputCount(info, &n_in));
  Ort::ThrowOnError(api->KernelInfo_GetOutputCount(info, &n_out));
  if (n_in != inputs || n_out != outputs)
    Fail(op, "expected ", inputs, " inputs and ", outputs, " output(s), got ", n_in, " and ",
         n_out);
}

inline void CheckRank(const std::string& op, const char* tensor,
                      const std::vector<int64_t>& shape, size_t rank, const char* layout) {
  if (shape.size() != rank)
    Fail(op, "input ", tensor, ": expected rank ", rank, " ", layout, ", got shape ",
         ShapeStr(shape));
}

inline void CheckVector(const std::string& op, const char* tensor,
                        const std::vector<int64_t>& shape, int64_t m, const std::string& context) {
  if (shape.size() != 1 || shape[0] != m)
    Fail(op, "input ", tensor, ": expected shape [", m, "] (one per output channel, ", context,
         "), got ", ShapeStr(shape));
}

// Runs parse(attrs) for a kernel's constructor; an exception becomes *init_error, reported by
// Compute (the lite API's kernel creation cannot return a status).
template <typename Fn>
void Construct(const OrtApi* api, const OrtKernelInfo* info, const char* name, std::string* label,
               std::string* init_error, Fn&& parse) noexcept {
  try {
    *label = OpLabel(api, info, name);
    parse(Attrs(api, info, *label));
  } catch (const std::exception& e) {
    *init_error = e.what();
  } catch (...) {
    *init_error = std::string(name) + ": unknown error while reading attributes";
  }
}

// A constant (initializer) input of element type T, so a kernel can lay its weights out once when
// it is created: false when the input is not a constant of that type (Compute then checks and
// reports the input as usual). The data belongs to the session and outlives the kernel.
template <typename T>
bool ConstantInput(const OrtKernelInfo* info, size_t index, const T** data, std::vector<int64_t>* shape) {
  int is_constant = 0;
  Ort::ConstValue v = Ort::ConstKernelInfo(info).GetTensorConstantInput(index, &is_constant);
  if (!is_constant) return false;
  Ort::TensorTypeAndShapeInfo ti = v.GetTensorTypeAndShapeInfo();
  if (ti.GetElementType() != Ort::TypeToTensorType<T>::type) return false;
  *shape = ti.GetShape();
  *data = v.GetTensorData<T>();
  return true;
}

// A run's scratch array: on the stack up to kInline elements (the one-row layers of small
// models, where a heap allocation per run is a measurable share), on the heap beyond. Not
// initialised.
template <typename T, size_t kInline>
class ScratchArray {
 public:
  explicit ScratchArray(size_t n) {
    if (n > kInline) heap_.resize(n);
    data_ = n > kInline ? heap_.data() : inline_;
  }
  T* data() { return data_; }
  T& operator[](size_t i) { return data_[i]; }

 private:
  T inline_[kInline];
  std::vector<T> heap_;
  T* data_;
};

// Runs body(i) for i in [0, total) on ORT's intra-op pool. body must not throw.
template <typename Body>
void ParallelFor(OrtKernelContext* ctx, size_t total, const Body& body) {
  if (total == 0) return;
  if (total == 1) {
    body(size_t{0});
    return;
  }
  auto trampoline = [](void* user, size_t i) { (*static_cast<const Body*>(user))(i); };
  Ort::KernelContext(ctx).ParallelFor(trampoline, total, 0,
                                      const_cast<void*>(static_cast<const void*>(&body)));
}

}  // namespace qcompile
