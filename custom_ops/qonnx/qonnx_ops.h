// QONNX reference quantizers (domain qonnx.custom_op.general): BipolarQuant, Quant, IntQuant
// (custom_ops/SPEC.md). Parameters broadcast against X; the output has X's shape.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "../common/op_util.h"
#include "../common/quantize.h"

namespace qcompile {

struct BipolarQuantOp {
  BipolarQuantOp(const OrtApi* api, const OrtKernelInfo* info) noexcept;
  Ort::Status Compute(OrtKernelContext* ctx, const Tensor<float>& x,
                      const Tensor<float>& scale, Tensor<float>& y);

  std::string label_, init_error_;
};

// Quant and IntQuant share this kernel; `kName` only changes the messages.
template <const char* kName>
struct QuantOp {
  QuantOp(const OrtApi* api, const OrtKernelInfo* info) noexcept;
  Ort::Status Compute(OrtKernelContext* ctx, const Tensor<float>& x,
                      const Tensor<float>& scale,
                      const Tensor<float>& zeropt,
                      const Tensor<float>& bitwidth, Tensor<float>& y);

  std::string label_, init_error_;
  int64_t signed_ = 1, narrow_ = 0;
  Rounding rounding_ = Rounding::kRound;
};

extern const char kQuantName[];
extern const char kIntQuantName[];

}  // namespace qcompile
