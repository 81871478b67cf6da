// qcompile::Requantize (custom_ops/SPEC.md): the epilogue of an int8 layer that feeds another
// int8 layer, in one pass: int32 sums -> the next layer's int8 / uint8 codes, optionally through
// the MaxPool between the two. It replaces onnxruntime's Cast -> Mul -> Add -> [MaxPool] ->
// QuantizeLinear -> Clip chain (five or six passes over the tensor, a quarter of an int8 CNV's
// time) and rounds exactly as that chain does, so swapping one for the other changes no code.
#pragma once

#include <cstdint>
#include <string>

#include "../common/conv_attrs.h"
#include "../common/op_util.h"
#include "../shift/shift_kernel.h"
#include "codes.h"

namespace qcompile {

// T: int8_t or uint8_t, the codes' type (that of y_zero_point); both are registered under one name.
template <typename T>
struct RequantizeOp {
  RequantizeOp(const OrtApi* api, const OrtKernelInfo* info) noexcept;
  // acc int32 with M channels along `axis`; scale, bias [M]; y_scale scalar or [M] (per channel);
  // y_zero_point scalar ->
  // codes of acc's shape (pooled: [N, M, OH, OW]).
  Ort::Status Compute(OrtKernelContext* ctx, const Ort::Custom::Tensor<int32_t>& acc,
                      const Ort::Custom::Tensor<float>& scale,
                      const Ort::Custom::Tensor<float>& bias,
                      const Ort::Custom::Tensor<float>& y_scale,
                      const Ort::Custom::Tensor<T>& y_zero_point, Ort::Custom::Tensor<T>& y);

  std::string label_, init_error_;
  int64_t axis_ = 1;         // the channel axis of acc (attribute axis; negative from the end)
  int64_t lo_ = 0, hi_ = 0;  // the codes' clamp (attributes lo / hi; default T's range)
  bool pool_ = false;        // kernel_shape given: a 2-D MaxPool (NCHW, axis 1) before the codes
  ConvAttrs pool_attrs_;     // its kernel_shape, strides, pads, dilations
  bool pow2_ = false;        // thresholds given: Pow2Quant's codes of y instead of y / y_scale
  shift::ActQuant pow2_quant_;
  const CodesVariant* codes_ = nullptr;  // the codes kernel (attribute kernel, QCOMPILE_REQUANTIZE_KERNEL)
};

}  // namespace qcompile
