// qcompile::Pow2Quant, qcompile::ShiftConv, qcompile::ShiftGemm
// (custom_ops/SPEC.md, "SHIFT: power-of-two weights").
#pragma once

#include <cstdint>
#include <string>

#include "../common/conv_attrs.h"
#include "../common/op_util.h"
#include "shift_kernel.h"

namespace qcompile {

struct Pow2QuantOp {
  Pow2QuantOp(const OrtApi* api, const OrtKernelInfo* info) noexcept;
  Ort::Status Compute(OrtKernelContext* ctx, const Ort::Custom::Tensor<float>& x,
                      Ort::Custom::Tensor<float>& y);

  std::string label_, init_error_;
  shift::ActQuant quant_;
};

struct ShiftConvOp {
  ShiftConvOp(const OrtApi* api, const OrtKernelInfo* info) noexcept;
  Ort::Status Compute(OrtKernelContext* ctx, const Ort::Custom::Tensor<float>& x,
                      const Ort::Custom::Tensor<uint8_t>& w,
                      const Ort::Custom::Tensor<float>& scale,
                      const Ort::Custom::Tensor<float>& bias, Ort::Custom::Tensor<float>& y);

  std::string label_, init_error_;
  ConvAttrs attrs_;
  shift::ActQuant quant_;
};

struct ShiftGemmOp {
  ShiftGemmOp(const OrtApi* api, const OrtKernelInfo* info) noexcept;
  Ort::Status Compute(OrtKernelContext* ctx, const Ort::Custom::Tensor<float>& x,
                      const Ort::Custom::Tensor<uint8_t>& w,
                      const Ort::Custom::Tensor<float>& scale,
                      const Ort::Custom::Tensor<float>& bias, Ort::Custom::Tensor<float>& y);

  std::string label_, init_error_;
  int64_t in_features_ = 0;
  shift::ActQuant quant_;
};

}  // namespace qcompile
