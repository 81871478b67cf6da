// qcompile::BitSerialConvThreshold, qcompile::BitSerialGemmThreshold and qcompile::PlaneMaxPool
// (custom_ops/SPEC.md): multi-bit layers that write the next layer's packed codes, and max-pooling
// of such codes, so no float tensor sits between two bit-serial layers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "../common/conv_attrs.h"
#include "../common/op_util.h"
#include "../packed_conv/weights.h"
#include "bitserial_ops.h"
#include "bitserial_variants.h"
#include "multi_threshold.h"

namespace qcompile {

// The output code attributes and their checks, shared by both threshold ops.
struct OutCodeAttrs {
  int64_t out_base = 0, out_planes = 0, out_group = 1;
  void Parse(const Attrs& at, const std::string& label);
  // Checks thresholds [M, L] and direction [M] (monotone, +-1, codes fit the planes); returns L.
  int64_t Check(const std::string& label, const int32_t* t, const std::vector<int64_t>& ts,
                const int32_t* dir, const std::vector<int64_t>& ds, int64_t M) const;
};

// The thresholds as MultiThresholdRow reads them (checked, flipped by direction): made once at
// kernel creation when thresholds (input 2) and direction (input 3) are constants, else per run.
class OutCodes {
 public:
  void Prepare(const OrtKernelInfo* info, const std::string& label, const OutCodeAttrs& attrs);
  // The epilogue's thresholds, codes and planes for this run's inputs (checked against the M
  // of W); from the prepared constants when these are they, else laid out in *scratch. The
  // caller sets the output geometry (plane, OG, Mg_out, Wg_out, OW, YW).
  bitserial::MultiThresholdArgs Args(const std::string& label, const OutCodeAttrs& attrs,
                                     const I32Tensor& thresholds, const I32Tensor& direction,
                                     int64_t M, OutCodes* scratch) const;

 private:
  const int32_t* t_src_ = nullptr;
  const int32_t* d_src_ = nullptr;
  std::vector<int64_t> t_shape_, d_shape_;
  int64_t M_ = 0;
  bitserial::ThresholdTables tables_;
};

struct BitSerialConvThresholdOp {
  BitSerialConvThresholdOp(const OrtApi* api, const OrtKernelInfo* info) noexcept;
  Ort::Status Compute(OrtKernelContext* ctx, const U64Tensor& x, const U64Tensor& w,
                      const I32Tensor& thresholds, const I32Tensor& direction, U64Tensor& y);

  std::string label_, init_error_;
  ConvAttrs attrs_;
  PlaneAttrs planes_;
  OutCodeAttrs out_;
  OutCodes codes_;
  const bitserial::BitSerialVariant* variant_ = nullptr;
  packed::PreparedWeights const_w_;
  lut::LutState lut_;
  packed::PreparedWeights const_w_concat_;
};

struct BitSerialGemmThresholdOp {
  BitSerialGemmThresholdOp(const OrtApi* api, const OrtKernelInfo* info) noexcept;
  Ort::Status Compute(OrtKernelContext* ctx, const U64Tensor& x, const U64Tensor& w,
                      const I32Tensor& thresholds, const I32Tensor& direction, U64Tensor& y);

  std::string label_, init_error_;
  int64_t in_features_ = 0;
  PlaneAttrs planes_;
  OutCodeAttrs out_;
  OutCodes codes_;
  const bitserial::BitSerialVariant* variant_ = nullptr;
  packed::PreparedWeights const_w_;  // W in the dense layout
};

struct PlaneMaxPoolOp {
  PlaneMaxPoolOp(const OrtApi* api, const OrtKernelInfo* info) noexcept;
  Ort::Status Compute(OrtKernelContext* ctx, const U64Tensor& x, const U64Tensor& or_mask,
                      U64Tensor& y);

  std::string label_, init_error_;
  ConvAttrs attrs_;
  int64_t planes_ = 0, group_ = 1, signed_ = 0;
};

}  // namespace qcompile
