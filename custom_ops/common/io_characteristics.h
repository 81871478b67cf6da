// Which inputs and outputs of an op are required, read from its Compute signature.
//
// onnxruntime's lite custom-op API declares every input and output optional, so a node that
// omits one (an empty name, or fewer inputs than the op takes) passes graph resolution, and the
// lite wrapper then builds an Ort::Custom::Tensor from the missing (null) value before Compute
// runs — a crash no check in Compute can prevent. Registration (registration.cc) overrides the
// two characteristic callbacks with these: a `const Tensor<T>&` / `Tensor<T>&` argument is
// required, a `std::optional<...>` one stays optional; onnxruntime then refuses a node that
// omits a required one when the session is created, as it does for its own ops.
#pragma once

#include <cstddef>
#include <optional>
#include <type_traits>
#include <vector>

#include "ort_api.h"
#include "tensor.h"

namespace qcompile {
namespace io {

enum class Dir { kNone, kInput, kOutput };

struct ArgInfo {
  Dir dir;
  bool optional;
};

template <typename T>
struct IsOptional : std::false_type {};
template <typename T>
struct IsOptional<std::optional<T>> : std::true_type {};

template <typename T>
struct Unoptional {
  using type = T;
};
template <typename T>
struct Unoptional<std::optional<T>> {
  using type = T;
};

// One Compute argument: inputs are const tensors (by reference or pointer), outputs non-const
// ones; anything else (the kernel context) is neither.
template <typename Arg>
constexpr ArgInfo Classify() {
  using Ref = std::remove_reference_t<Arg>;
  constexpr bool optional = IsOptional<std::remove_cv_t<Ref>>::value;
  using Inner = std::conditional_t<optional, typename Unoptional<std::remove_cv_t<Ref>>::type, Ref>;
  using Pointee = std::remove_pointer_t<Inner>;
  // OrtKernelContext is incomplete, so it is sorted out before is_base_of looks at a type.
  if constexpr (std::is_same_v<std::remove_cv_t<Pointee>, OrtKernelContext>)
    return {Dir::kNone, false};
  else if constexpr (!std::is_base_of_v<TensorArg, std::remove_cv_t<Pointee>>)
    return {Dir::kNone, false};
  else
    return {std::is_const_v<Pointee> ? Dir::kInput : Dir::kOutput, optional};
}

template <typename Sig>
struct ComputeArgs;
template <typename Op, typename... Args>
struct ComputeArgs<Ort::Status (Op::*)(Args...)> {
  static std::vector<ArgInfo> List() { return {Classify<Args>()...}; }
};

// Whether input (dir kInput) or output i of Op is optional, in Compute's argument order.
template <typename Op>
bool IsOptionalAt(Dir dir, size_t i) {
  static const std::vector<ArgInfo> args = ComputeArgs<decltype(&Op::Compute)>::List();
  size_t k = 0;
  for (const ArgInfo& a : args) {
    if (a.dir != dir) continue;
    if (k++ == i) return a.optional;
  }
  return false;
}

// Replaces the lite API's "everything optional" with Op's own characteristics.
template <typename Op>
void DeclareCharacteristics(OrtCustomOp* op) {
  op->GetInputCharacteristic = [](const OrtCustomOp*, size_t i) {
    return IsOptionalAt<Op>(Dir::kInput, i) ? INPUT_OUTPUT_OPTIONAL : INPUT_OUTPUT_REQUIRED;
  };
  op->GetOutputCharacteristic = [](const OrtCustomOp*, size_t i) {
    return IsOptionalAt<Op>(Dir::kOutput, i) ? INPUT_OUTPUT_OPTIONAL : INPUT_OUTPUT_REQUIRED;
  };
}

}  // namespace io
}  // namespace qcompile
