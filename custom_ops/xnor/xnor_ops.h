// qcompile::BinarizePack, qcompile::XnorConv, qcompile::XnorConvThreshold, qcompile::XnorGemm,
// qcompile::PackedMaxPool (custom_ops/SPEC.md): attributes, shape checks and outputs; the
// compute is in the packed-convolution core (packed_conv/) and the family's micro-kernels.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "../common/conv_attrs.h"
#include "../common/op_util.h"
#include "../packed_conv/weights.h"
#include "xnor_variants.h"

namespace qcompile {

struct BinarizePackOp {
  BinarizePackOp(const OrtApi* api, const OrtKernelInfo* info) noexcept;
  Ort::Status Compute(OrtKernelContext* ctx, const F32Tensor& x, U64Tensor& y);

  std::string label_, init_error_;
  int64_t group_ = 1;
};

// What XnorConv and XnorConvThreshold share: conv attributes, the variant, prepared weights.
struct XnorConvState {
  void Init(const OrtKernelInfo* info, const Attrs& at, const std::string& label);

  ConvAttrs attrs_;
  const xnor::XnorVariant* variant_ = nullptr;
  packed::PreparedWeights const_w_, concat_w_;
  int tap_concat_ = 0;  // tapconcat::TapConcatMode()
  lut::LutState lut_;
};

struct XnorConvOp : XnorConvState {
  XnorConvOp(const OrtApi* api, const OrtKernelInfo* info) noexcept;
  Ort::Status Compute(OrtKernelContext* ctx, const U64Tensor& x, const U64Tensor& w,
                      const F32Tensor& scale, const F32Tensor& bias, F32Tensor& y);

  std::string label_, init_error_;
};

struct XnorConvThresholdOp : XnorConvState {
  XnorConvThresholdOp(const OrtApi* api, const OrtKernelInfo* info) noexcept;
  Ort::Status Compute(OrtKernelContext* ctx, const U64Tensor& x, const U64Tensor& w,
                      const I32Tensor& threshold, const I32Tensor& direction, U64Tensor& y);

  std::string label_, init_error_;
  int64_t out_group_ = 1;
};

struct PackedMaxPoolOp {
  PackedMaxPoolOp(const OrtApi* api, const OrtKernelInfo* info) noexcept;
  Ort::Status Compute(OrtKernelContext* ctx, const U64Tensor& x, const U64Tensor& or_mask,
                      U64Tensor& y);

  std::string label_, init_error_;
  ConvAttrs attrs_;
};

struct XnorGemmOp {
  XnorGemmOp(const OrtApi* api, const OrtKernelInfo* info) noexcept;
  Ort::Status Compute(OrtKernelContext* ctx, const U64Tensor& x, const U64Tensor& w,
                      const F32Tensor& scale, const F32Tensor& bias, F32Tensor& y);

  std::string label_, init_error_;
  int64_t in_features_ = 0;
  const xnor::XnorVariant* variant_ = nullptr;
  packed::PreparedWeights const_w_;
};

}  // namespace qcompile
