// qcompile::Requantize (custom_ops/SPEC.md): the epilogue of an int8 layer that feeds another
// int8 layer, in one pass: int32 sums -> the next layer's int8 / uint8 codes, optionally through
// the MaxPool between the two. It replaces onnxruntime's Cast -> Mul -> Add -> [MaxPool] ->
// QuantizeLinear -> Clip chain (five or six passes over the tensor, a quarter of an int8 CNV's
// time) and rounds exactly as that chain does, so swapping one for the other changes no code.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "../common/conv_attrs.h"
#include "../common/op_util.h"
#include "../shift/shift_kernel.h"
#include "codes.h"

namespace qcompile {

// A 2-D MaxPool of one channel's int32 sums: the plane [H, W] has its rows `stride` values apart.
struct PoolGeometry {
  int64_t H, W, OH, OW, KH, KW, sh, sw, dh, dw, pt, pl, stride;
};

// Requantize's steps after the sums, shared with DirectConvRequantize: an optional 2-D MaxPool of
// the int32 sums (max for a channel with a positive scale, min for a negative one: every step
// after is monotone in the sum), then the codes (uniform, or Pow2Quant's thresholds) in [lo, hi].
struct RequantizeSteps {
  int64_t lo = 0, hi = 0;  // the codes' clamp (attributes lo / hi; default the codes' type range)
  bool pool = false;       // <prefix>kernel_shape given: the pool before the codes
  ConvAttrs pool_attrs;    // its kernel_shape, strides, pads, dilations
  bool pow2 = false;       // thresholds given: Pow2Quant's codes of y instead of y / y_scale
  shift::ActQuant pow2_quant;
  const CodesVariant* codes = nullptr;  // the codes kernel (`kernel`, QCOMPILE_REQUANTIZE_KERNEL)

  // Attributes lo, hi, thresholds and the pool's (pool_prefix + kernel_shape, strides, pads,
  // dilations); `kernel` names the codes kernel ("" = the best here). T: the codes' type.
  template <typename T>
  void Parse(const Attrs& at, const std::string& label, const std::string& pool_prefix,
             const std::string& kernel);
  // Thresholds mode takes only the one y_scale 2^-(L-1) of Pow2Quant's codes.
  void CheckScale(const std::string& label, const float* ys, int64_t n_ys) const;
  // The pool over an H x W plane (rows `stride` apart); fails naming `shape` when it is empty.
  PoolGeometry Pool(const std::string& label, const std::vector<int64_t>& shape, int64_t H, int64_t W,
                    int64_t stride) const;
};

// One channel at a time through the steps, with the scratch rows they need (one per task).
template <typename T>
class ChannelCodes {
 public:
  // n: the values a channel has (not pooled) or its pooled outputs; g: the pool, when s.pool
  ChannelCodes(const RequantizeSteps& s, const PoolGeometry& g, int64_t n, int32_t zp);
  // src: the channel's sums (not pooled: n contiguous values; pooled: g's plane) -> n codes
  void Run(const Codes& k, const int32_t* src, T* dst);

 private:
  const RequantizeSteps& s_;
  PoolGeometry g_;
  int64_t n_;
  int32_t zp_;
  T empty_code_;  // the code of MaxPool's -inf (a window with no tap inside the input)
  std::vector<int32_t> pooled_;
  std::vector<int64_t> empty_at_;
  std::vector<float> y_row_;
  std::vector<int8_t> a_row_;
};

// T: int8_t or uint8_t, the codes' type (that of y_zero_point); both are registered under one name.
template <typename T>
struct RequantizeOp {
  RequantizeOp(const OrtApi* api, const OrtKernelInfo* info) noexcept;
  // acc int32 with M channels along `axis`; scale, bias [M]; y_scale scalar or [M] (per channel);
  // y_zero_point scalar ->
  // codes of acc's shape (pooled: [N, M, OH, OW]).
  Ort::Status Compute(OrtKernelContext* ctx, const Tensor<int32_t>& acc,
                      const Tensor<float>& scale,
                      const Tensor<float>& bias,
                      const Tensor<float>& y_scale,
                      const Tensor<T>& y_zero_point, Tensor<T>& y);

  std::string label_, init_error_;
  int64_t axis_ = 1;  // the channel axis of acc (attribute axis; negative from the end)
  RequantizeSteps steps_;
};

}  // namespace qcompile
