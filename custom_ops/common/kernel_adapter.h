// Binds an op class to onnxruntime's custom-op C API (OrtCustomOp): the input and output types
// and which are required come from the class's Compute signature,
//   Ort::Status Compute(OrtKernelContext*, const Tensor<T>&... inputs, Tensor<U>&... outputs)
// the kernel is `new Op(api, info)`, and a run binds the arguments and calls Compute.
//
// Written here in place of onnxruntime's lite custom-op API, whose run builds a heap-allocated
// tensor object per argument and asks onnxruntime for a fresh shape object each time: about
// 0.8 us per node, measured (perf) on a chain of 64-channel BitSerialGemmThreshold nodes, more
// than the kernels of a small dense layer. Here a run reuses its argument tensors (thread-local,
// per op class: one thread runs one node at a time), so it allocates nothing once warm.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "io_characteristics.h"
#include "ort_api.h"
#include "tensor.h"

namespace qcompile {

// An optional input, std::optional<const Tensor<T>*>: empty when the node has fewer inputs.
template <typename T>
struct OptionalInput {
  Tensor<T> tensor;
  std::optional<const Tensor<T>*> value;
};

template <typename A>
struct SlotOf {
  using type = std::remove_cv_t<std::remove_reference_t<A>>;  // Tensor<T> or OrtKernelContext*
};
template <typename T>
struct SlotOf<std::optional<const Tensor<T>*>> {
  using type = OptionalInput<T>;
};

template <typename S>
struct IsOptionalInput : std::false_type {};
template <typename T>
struct IsOptionalInput<OptionalInput<T>> : std::true_type {};

template <typename Op, typename Sig = decltype(&Op::Compute)>
struct KernelAdapter;

template <typename Op, typename... Args>
struct KernelAdapter<Op, Ort::Status (Op::*)(Args...)> {
  template <typename A>
  using Slot = typename SlotOf<A>::type;
  using Slots = std::tuple<Slot<Args>...>;

  template <typename A>
  static constexpr bool kIsInput = std::is_const_v<std::remove_reference_t<A>>;

  // The ONNX element types of the inputs (outputs), in argument order.
  static std::vector<ONNXTensorElementDataType> Types(bool inputs) {
    std::vector<ONNXTensorElementDataType> out;
    (AddType<Args>(inputs, &out), ...);
    return out;
  }
  template <typename A>
  static void AddType(bool inputs, std::vector<ONNXTensorElementDataType>* out) {
    using S = Slot<A>;
    if constexpr (IsOptionalInput<S>::value) {
      if (inputs) out->push_back(ElementOf(static_cast<decltype(S::tensor)*>(nullptr)));
    } else if constexpr (std::is_base_of_v<TensorArg, S>) {
      if (kIsInput<A> == inputs) out->push_back(ElementOf(static_cast<S*>(nullptr)));
    }
  }
  template <typename T>
  static constexpr ONNXTensorElementDataType ElementOf(Tensor<T>*) {
    return OnnxType<T>::kValue;
  }

  // The argument Compute is given for slot s.
  template <typename S>
  static decltype(auto) Arg(S& s) {
    if constexpr (IsOptionalInput<S>::value)
      return (s.value);
    else
      return (s);
  }

  // Binds argument A (slot s) of this run; false for an omitted input (*omitted: its index).
  template <typename A>
  static bool Bind(Slot<A>& s, OrtKernelContext* ctx, size_t* in, size_t* out, size_t* omitted) {
    if constexpr (std::is_same_v<Slot<A>, OrtKernelContext*>) {
      s = ctx;
    } else if constexpr (IsOptionalInput<Slot<A>>::value) {
      size_t count = 0;
      ThrowIfFailed(Ort::GetApi().KernelContext_GetInputCount(ctx, &count));
      const size_t i = (*in)++;
      s.value.reset();
      if (i < count) {
        if (!s.tensor.BindInput(ctx, i)) {
          *omitted = i;
          return false;
        }
        s.value = &s.tensor;
      }
    } else if constexpr (kIsInput<A>) {
      const size_t i = (*in)++;
      if (!s.BindInput(ctx, i)) {
        *omitted = i;
        return false;
      }
    } else {
      s.BindOutput(ctx, (*out)++);
    }
    return true;
  }

  static OrtStatusPtr Run(Op* op, OrtKernelContext* ctx, const char* name) {
    return RunWith(op, ctx, name, std::index_sequence_for<Args...>{});
  }
  template <size_t... I>
  static OrtStatusPtr RunWith(Op* op, OrtKernelContext* ctx, const char* name,
                              std::index_sequence<I...>) {
    thread_local Slots slots;
    const OrtApi& api = Ort::GetApi();
    size_t in = 0, out = 0, omitted = 0;
    try {
      const bool bound =
          (Bind<std::tuple_element_t<I, std::tuple<Args...>>>(std::get<I>(slots), ctx, &in, &out,
                                                              &omitted) && ...);
      if (!bound) {
        const std::string msg = std::string(name) + ": input " + std::to_string(omitted) +
                                " is omitted (''); give it a tensor or drop the trailing inputs";
        return api.CreateStatus(ORT_INVALID_ARGUMENT, msg.c_str());
      }
    } catch (const std::exception& e) {
      const std::string msg = std::string(name) + ": " + e.what();
      return api.CreateStatus(ORT_RUNTIME_EXCEPTION, msg.c_str());
    }
    return op->Compute(Arg(std::get<I>(slots))...).release();
  }
};

// The OrtCustomOp of Op, for every registration table row (op name, CPU provider).
template <typename Op>
struct AdaptedOp : OrtCustomOp {
  using Adapter = KernelAdapter<Op>;
  std::string name;
  std::vector<ONNXTensorElementDataType> inputs, outputs;

  explicit AdaptedOp(const char* op_name) : OrtCustomOp{}, name(op_name) {
    inputs = Adapter::Types(true);
    outputs = Adapter::Types(false);
    OrtCustomOp::version = ORT_API_VERSION;
    GetName = [](const OrtCustomOp* op) { return Self(op)->name.c_str(); };
    GetExecutionProviderType = [](const OrtCustomOp*) { return "CPUExecutionProvider"; };
    GetInputTypeCount = [](const OrtCustomOp* op) { return Self(op)->inputs.size(); };
    GetInputType = [](const OrtCustomOp* op, size_t i) { return Self(op)->inputs[i]; };
    GetOutputTypeCount = [](const OrtCustomOp* op) { return Self(op)->outputs.size(); };
    GetOutputType = [](const OrtCustomOp* op, size_t i) { return Self(op)->outputs[i]; };
    GetInputMemoryType = [](const OrtCustomOp*, size_t) { return OrtMemTypeDefault; };
    GetInputCharacteristic = [](const OrtCustomOp*, size_t i) {
      return io::IsOptionalAt<Op>(io::Dir::kInput, i) ? INPUT_OUTPUT_OPTIONAL : INPUT_OUTPUT_REQUIRED;
    };
    GetOutputCharacteristic = [](const OrtCustomOp*, size_t i) {
      return io::IsOptionalAt<Op>(io::Dir::kOutput, i) ? INPUT_OUTPUT_OPTIONAL : INPUT_OUTPUT_REQUIRED;
    };
    GetVariadicInputMinArity = [](const OrtCustomOp*) { return 0; };
    GetVariadicInputHomogeneity = [](const OrtCustomOp*) { return 0; };
    GetVariadicOutputMinArity = [](const OrtCustomOp*) { return 0; };
    GetVariadicOutputHomogeneity = [](const OrtCustomOp*) { return 0; };
    GetStartVersion = [](const OrtCustomOp*) { return 1; };
    GetEndVersion = [](const OrtCustomOp*) { return 1 << 30; };
    // Op's constructor is noexcept: a bad attribute is kept and reported by Compute.
    CreateKernel = [](const OrtCustomOp*, const OrtApi* api, const OrtKernelInfo* info) -> void* {
      return new Op(api, info);
    };
    op_name = name.c_str();
    KernelComputeV2 = [](void* kernel, OrtKernelContext* ctx) -> OrtStatusPtr {
      return Adapter::Run(static_cast<Op*>(kernel), ctx, AdaptedOp::op_name);
    };
    KernelDestroy = [](void* kernel) { delete static_cast<Op*>(kernel); };
  }
  static const AdaptedOp* Self(const OrtCustomOp* op) { return static_cast<const AdaptedOp*>(op); }
  static inline const char* op_name = "";  // for messages; one registration per Op class
};

}  // namespace qcompile
