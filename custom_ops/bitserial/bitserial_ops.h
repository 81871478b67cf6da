// qcompile::QuantizePack, qcompile::BitSerialConv, qcompile::BitSerialGemm
// (custom_ops/SPEC.md, "Multi-bit operands: bit planes").
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "../common/conv_attrs.h"
#include "../common/op_util.h"
#include "../packed_conv/weights.h"
#include "bitserial_variants.h"

namespace qcompile {

// QuantizePack's quantizer and packing, shared with BitSerialMlp (which quantizes its input so).
struct PackQuantizer {
  float scale = 1.0f, zero_point = 0.0f, qmin = 0.0f, qmax = 0.0f;
  // x is first x * pre_scale + pre_bias (two rounded float ops, as the Mul and Add folded in)
  float pre_scale = 1.0f, pre_bias = 0.0f;
  bool has_pre = false;
  int64_t planes = 0, zp_int = 0;
  int rounding = 0;  // 0 ROUND, 1 CEIL, 2 FLOOR, 3 ROUND_TO_ZERO
  bool twos_complement = false;
  int64_t v_min = 0, v_max = 0;  // what `planes` planes can hold
  const bitserial::QuantPackKernel* kernel = nullptr;

  // The attributes scale, zero_point, bitwidth, signed, narrow, rounding_mode, planes, pre_scale,
  // pre_bias; the row kernel is the default QuantizePack variant unless `kernel_name` names one.
  void Parse(const Attrs& at, const std::string& label, const std::string& kernel_name);
  // x [N, C, H, W] (as [N, C, 1, 1] for rank 2) in G groups into y's packed planes; fails naming
  // the first value that has no code.
  void Pack(OrtKernelContext* ctx, const std::string& label, const float* x,
            const std::vector<int64_t>& xs, int64_t N, int64_t C, int64_t H, int64_t W, int64_t G,
            uint64_t* y) const;
};

struct QuantizePackOp {
  QuantizePackOp(const OrtApi* api, const OrtKernelInfo* info) noexcept;
  Ort::Status Compute(OrtKernelContext* ctx, const F32Tensor& x, U64Tensor& y);

  std::string label_, init_error_;
  PackQuantizer quant_;
  int64_t group_ = 1;
};

// Coefficients and range checks shared by BitSerialConv and BitSerialGemm.
struct PlaneAttrs {
  std::vector<int64_t> act_coeffs, weight_coeffs;
  int64_t weight_offset = 0;
  void Parse(const Attrs& at, const std::string& label);
  // The coefficients' counts (1..16) and magnitudes (<= 2^20); Parse calls it.
  void Validate(const std::string& label) const;
  // Fails unless |D| <= limit (default 2^31 - 1, the int32 D) for `terms` (channels x taps)
  // products.
  void CheckRange(const std::string& label, int64_t terms, double limit = 2147483647.0) const;
  void Fill(packed::BitSerialArgs* a) const;
  // Fill(a), then check a dense layer's X [N, P*Kw] and W [M, Q*Kw] against in_features and set
  // a->geo: a dense layer is a 1x1 convolution of a 1x1 image, with the same plane layouts.
  void FillDense(const std::string& label, int64_t in_features, const std::vector<int64_t>& xs,
                 const std::vector<int64_t>& ws, packed::BitSerialArgs* a) const;
};

struct BitSerialConvOp {
  BitSerialConvOp(const OrtApi* api, const OrtKernelInfo* info) noexcept;
  Ort::Status Compute(OrtKernelContext* ctx, const U64Tensor& x, const U64Tensor& w,
                      const F32Tensor& scale, const F32Tensor& bias, F32Tensor& y);

  std::string label_, init_error_;
  ConvAttrs attrs_;
  PlaneAttrs planes_;
  const bitserial::BitSerialVariant* variant_ = nullptr;
  packed::PreparedWeights const_w_;
  lut::LutState lut_;
  packed::PreparedWeights const_w_concat_;  // W with the taps of a kernel row concatenated
};

struct BitSerialGemmOp {
  BitSerialGemmOp(const OrtApi* api, const OrtKernelInfo* info) noexcept;
  Ort::Status Compute(OrtKernelContext* ctx, const U64Tensor& x, const U64Tensor& w,
                      const F32Tensor& scale, const F32Tensor& bias, F32Tensor& y);

  std::string label_, init_error_;
  int64_t in_features_ = 0;
  PlaneAttrs planes_;
  const bitserial::BitSerialVariant* variant_ = nullptr;
  packed::PreparedWeights const_w_;
};

}  // namespace qcompile
