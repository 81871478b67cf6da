// qcompile::BitSerialMlp (custom_ops/SPEC.md): a chain of dense bit-serial layers in one op:
// QuantizePack of the float input, BitSerialGemmThreshold for every layer but the last (each
// writes the next one's codes), BitSerialGemm for the last. For small MLPs, whose layers take
// less time than onnxruntime spends on a node; the same kernels and epilogues as the single ops.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "../common/op_util.h"
#include "bitserial_ops.h"
#include "bitserial_threshold_ops.h"
#include "bitserial_variants.h"
#include "multi_threshold.h"

namespace qcompile {

struct BitSerialMlpOp {
  BitSerialMlpOp(const OrtApi* api, const OrtKernelInfo* info) noexcept;
  Ort::Status Compute(OrtKernelContext* ctx, const F32Tensor& x, const U64Tensor& w,
                      const I32Tensor& thresholds, const I32Tensor& direction,
                      const F32Tensor& scale, const F32Tensor& bias, F32Tensor& y);

  struct Layer {
    int64_t K = 0, M = 0, Kw = 0;  // in and out features, words per input plane
    PlaneAttrs planes;
    OutCodeAttrs out;               // hidden layers: the next layer's codes
    int64_t levels = 0;             // hidden layers: thresholds per channel (L)
    int64_t w_at = 0, t_at = 0, d_at = 0;  // offsets into the concatenated inputs
  };
  // The layers' W (dense blocked) and thresholds (flipped, by level), from the inputs' data.
  struct Prepared {
    const uint64_t* w_src = nullptr;
    const int32_t* t_src = nullptr;
    const int32_t* d_src = nullptr;
    std::vector<packed::PreparedWeights> w;
    std::vector<bitserial::ThresholdTables> thresholds;  // the hidden layers'
  };
  void Prepare(const uint64_t* w, const int32_t* t, const int32_t* d, Prepared* out) const;

  std::string label_, init_error_;
  PackQuantizer quant_;
  std::vector<Layer> layers_;
  int64_t w_words_ = 0, t_count_ = 0, d_count_ = 0;  // the expected input sizes
  const bitserial::BitSerialVariant* variant_ = nullptr;
  Prepared const_;  // when W, thresholds and direction are constants
};

}  // namespace qcompile
