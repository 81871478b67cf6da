// qcompile::BinarizePack, qcompile::XnorConv, qcompile::XnorGemm (custom_ops/SPEC.md).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../common/conv_attrs.h"
#include "../common/op_util.h"
#include "../lut/lut_run.h"
#include "xnor_variants.h"

namespace qcompile {

// W laid out for the kernel variant once at kernel creation when W is a constant initializer
// (the usual case for compiled models), so runs skip the re-layout.
struct ConstWeights {
  const uint64_t* src = nullptr;  // W's data in the session; nullptr when W is not constant
  std::vector<int64_t> shape;
  std::vector<uint64_t> laid_out;

  // Lays out input 1 (W) in `layout` when it is a constant.
  void Prepare(const OrtKernelInfo* info, xnor::WeightLayout layout, int64_t group);
  // This (the laid-out weights) if w is that constant, else nullptr.
  const ConstWeights* Get(const uint64_t* w, const std::vector<int64_t>& ws) const {
    return (src && w == src && ws == shape) ? this : nullptr;
  }
};

// Tap concatenation for few channels per group (xnor_ops.cc): W with the KW taps of each kernel
// row concatenated into one bit vector, laid out for the variant once at kernel creation when W
// is a constant initializer.
struct ConcatWeights {
  const uint64_t* src = nullptr;  // W's data in the session; nullptr when not prepared
  std::vector<int64_t> shape;
  std::vector<uint64_t> laid_out;  // [M, KH, 1, Wg2] (Wg2 = ceil(KW*Cg/64)) in the layout
  std::vector<int32_t> tap_pop;    // [M, KH, KW]: popcount of each tap's weight words

  // Prepares when W is a constant, the variant reads laid-out weights, the convolution
  // qualifies and W has no pad bit set.
  void Prepare(const OrtKernelInfo* info, const xnor::XnorVariant* v, const ConvAttrs& a,
               int mode);
  const ConcatWeights* Get(const uint64_t* w, const std::vector<int64_t>& ws) const {
    return (src && w == src && ws == shape) ? this : nullptr;
  }
};

// When kernels concatenate taps, from QCOMPILE_XNOR_TAP_CONCAT (read when a kernel is created):
// "0" never (A/B timing), "force" whenever it saves words (tests), else when it pays (auto).
enum { kTapConcatOff = 0, kTapConcatAuto = 1, kTapConcatForce = 2 };
int TapConcatMode();

// W [M, taps words per channel] in `layout` (ConvArgs::wb); empty for kWeightsPlain.
std::vector<uint64_t> LayoutWeights(xnor::WeightLayout layout, const uint64_t* w, int64_t M,
                                    int64_t G, int64_t taps);

// The kernel variant for a new kernel (QCOMPILE_KERNEL honoured); nullptr and *init_error set
// ("<label>: ...") when none.
const xnor::XnorVariant* PickVariant(const std::string& label, std::string* init_error);

// When a new kernel of variant v runs the table-lookup kernel: v->lut_use, except that
// QCOMPILE_LUT=0 turns kLutWhenFaster off (A/B timing of the variant's own kernel).
lut::LutUse LutUseFor(const xnor::XnorVariant* v);

// The LUT side of an XnorConv-family op: when it runs, and its constant W's tables.
struct LutState {
  lut::LutUse use = lut::kLutOff;
  std::unique_ptr<lut::LutTableCache> cache = std::make_unique<lut::LutTableCache>();
};

using U64Tensor = Ort::Custom::Tensor<uint64_t>;
using F32Tensor = Ort::Custom::Tensor<float>;
using I32Tensor = Ort::Custom::Tensor<int32_t>;

// Checks X [N, H, W, G*P*Wg] and W [M, KH, KW, Q*Wg] against conv attributes (P, Q planes; 1
// for binary operands) and returns the kernels' geometry; fails naming the tensor and shapes.
xnor::ConvGeometry MakeConvGeometry(const std::string& label, const ConvAttrs& a,
                                    const std::vector<int64_t>& xs,
                                    const std::vector<int64_t>& ws, int64_t P, int64_t Q);

struct BinarizePackOp {
  BinarizePackOp(const OrtApi* api, const OrtKernelInfo* info) noexcept;
  Ort::Status Compute(OrtKernelContext* ctx, const F32Tensor& x, U64Tensor& y);

  std::string label_, init_error_;
  int64_t group_ = 1;
};

struct XnorConvOp {
  XnorConvOp(const OrtApi* api, const OrtKernelInfo* info) noexcept;
  Ort::Status Compute(OrtKernelContext* ctx, const U64Tensor& x, const U64Tensor& w,
                      const F32Tensor& scale, const F32Tensor& bias, F32Tensor& y);

  std::string label_, init_error_;
  ConvAttrs attrs_;
  const xnor::XnorVariant* variant_ = nullptr;
  ConstWeights const_w_;
  ConcatWeights concat_w_;
  int tap_concat_ = kTapConcatOff;
  LutState lut_;
};

struct XnorConvThresholdOp {
  XnorConvThresholdOp(const OrtApi* api, const OrtKernelInfo* info) noexcept;
  Ort::Status Compute(OrtKernelContext* ctx, const U64Tensor& x, const U64Tensor& w,
                      const I32Tensor& threshold, const I32Tensor& direction, U64Tensor& y);

  std::string label_, init_error_;
  ConvAttrs attrs_;
  int64_t out_group_ = 1;
  const xnor::XnorVariant* variant_ = nullptr;
  ConstWeights const_w_;
  ConcatWeights concat_w_;
  int tap_concat_ = kTapConcatOff;
  LutState lut_;
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
  ConstWeights const_w_;
};

}  // namespace qcompile
