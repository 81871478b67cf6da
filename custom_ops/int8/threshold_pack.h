// qcompile::ThresholdPack (custom_ops/SPEC.md): an int8 conv (onnxruntime's ConvInteger) that
// feeds a binary layer writes the binary layer's packed sign bits straight from its int32 sums,
// by one integer threshold per channel, as XnorConvThreshold does from its XNOR sums: the float
// epilogue, BatchNorm, sign and BinarizePack between the two layers become one pass.
#pragma once

#include <cstdint>
#include <string>

#include "../common/op_util.h"
#include "../xnor/xnor_threshold.h"

namespace qcompile {

struct ThresholdPackOp {
  ThresholdPackOp(const OrtApi* api, const OrtKernelInfo* info) noexcept;
  // D int32 [N, M, H, W]; threshold, direction int32 [M] -> bits uint64 [N, H, W, G * Wg].
  Ort::Status Compute(OrtKernelContext* ctx, const Tensor<int32_t>& d,
                      const Tensor<int32_t>& threshold,
                      const Tensor<int32_t>& direction,
                      Tensor<uint64_t>& y);

  std::string label_, init_error_;
  int64_t out_group_ = 1;
  xnor::ThresholdRowFn pack_ = nullptr;  // the XNOR variant table's packing (SSE2 on x86)
};

}  // namespace qcompile
