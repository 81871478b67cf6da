// QONNX Trunc (domain qonnx.custom_op.general; custom_ops/SPEC.md "Trunc"): re-quantizes values on
// an integer grid to a narrower one by a power-of-two division and a rounding. Brevitas writes it
// after an AveragePool (TruncAvgPool2d). Version 2 has 6 inputs, version 1 has 5; the kernel
// tells them apart by the input count.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "../common/op_util.h"

namespace qcompile {

// qonnx's Trunc rounding modes (ROUND and HALF_EVEN are the same: half to even).
enum class TruncRounding { kHalfEven, kCeil, kFloor, kUp, kDown, kHalfUp, kHalfDown };

struct TruncOp {
  TruncOp(const OrtApi* api, const OrtKernelInfo* info) noexcept;
  // v2: (X, scale, zeropt, input_bit_width, output_scale, output_bit_width);
  // v1: (X, scale, zeropt, input_bit_width, output_bit_width).
  Ort::Status Compute(OrtKernelContext* ctx, const Tensor<float>& x,
                      const Tensor<float>& scale,
                      const Tensor<float>& zeropt,
                      const Tensor<float>& input_bit_width,
                      const Tensor<float>& in4,
                      std::optional<const Tensor<float>*> in5,
                      Tensor<float>& y);

  std::string label_, init_error_;
  int64_t signed_ = 1, narrow_ = 0;
  TruncRounding rounding_ = TruncRounding::kFloor;
  size_t inputs_ = 6;
};

}  // namespace qcompile
