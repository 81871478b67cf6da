// qcompile::DirectConvInteger (custom_ops/SPEC.md): onnxruntime's ConvInteger for a conv that is not
// depthwise, the same inputs, attributes and int32 sums, computed without im2col (direct_conv_kernel.h).
// onnxruntime's ConvInteger writes an im2col copy of the input (K x pixels bytes) and runs a
// general int8 GEMM that packs both operands on every call; on the small images of quantized
// CNNs (CNV, the Fashion-MNIST ConvNet) that was 53-73% of the compiled model's time.
// DirectConvRequantize fuses qcompile::Requantize's epilogue, as DepthwiseConvRequantize does.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "../common/conv_attrs.h"
#include "../common/kernel_select.h"
#include "../common/op_util.h"
#include "codes.h"
#include "direct_conv_kernel.h"
#include "requantize.h"

namespace qcompile {

constexpr int64_t kAvx2Block = 4, kVnniBlock = 8, kAmxBlock = 32;
#ifdef QCOMPILE_HAVE_AMX
void DirectSumAmx(const dc::Geometry& g, const int64_t* runs, const uint8_t* xq, const int8_t* wq,
                  const int32_t* init, int32_t* acc);
#endif
#ifdef QCOMPILE_HAVE_AVX2
void DirectSumAvx2(const dc::Geometry& g, const int64_t* runs, const uint8_t* xq, const int8_t* wq,
                   const int32_t* init, int32_t* acc);
#endif
#ifdef QCOMPILE_HAVE_AVX512VNNI
void DirectSumVnni(const dc::Geometry& g, const int64_t* runs, const uint8_t* xq, const int8_t* wq,
                   const int32_t* init, int32_t* acc);
#endif

struct DirectConvVariant {
  VariantId id;
  dc::SumBlockFn sum;
  int64_t block;  // output channels a call computes (MB)
  int64_t tile;   // flat outputs a step computes: g.run is a multiple
  bool pairs_int16;  // exact only when every adjacent weight pair has |w0| + |w1| <= 128
  bool amx_rows;     // weights as AMX tile rows (direct_conv_kernel.h), quads in chunks of 16
  int64_t min_quads;  // the best-available pick skips it below this many input channel quads
};
const VariantTable<DirectConvVariant>& DirectConvVariants();

// Multiply-adds per second of the named variant's sum kernel on L1-resident data (64 input
// channels, a 3x3 window, 480 outputs, one block of channels), measured for about `seconds`; 0 for
// an unknown variant or one this CPU cannot run (qcompile_direct_conv_ceiling).
double DirectConvCeiling(const char* name, double seconds);

// The weights of one node in the layout of its variant(s) (direct_conv_kernel.h), with what the
// sums need besides: per output channel sum(w - w_zp), and whether the pairs fit int16.
struct DirectWeights {
  const void* src = nullptr;  // the constant it was prepared from; nullptr: none prepared
  std::vector<int64_t> shape;
  int32_t w_zp = 0;
  const DirectConvVariant* variant = nullptr;
  std::vector<int8_t> packed;   // [G, M / MB, taps, CQ, MB, 4]
  std::vector<int32_t> w_sum;   // [G M]: sum over the window of w - w_zp
};

// What both ops read from their node: the conv attributes, group, and the variant the node asks
// for (attribute kernel, QCOMPILE_DIRECT_KERNEL; "" = the best this CPU runs for its weights).
struct DirectConvState {
  void Init(const Attrs& at, const std::string& label);

  ConvAttrs attrs_;
  int64_t group_ = 1;
  std::string kernel_;  // the name asked for ("" = best)
  DirectWeights const_w_;  // prepared at kernel creation when w is a constant
};

// TX, TW: int8_t or uint8_t, the types of x and w (ConvInteger's T1, T2).
template <typename TX, typename TW>
struct DirectConvIntegerOp : DirectConvState {
  DirectConvIntegerOp(const OrtApi* api, const OrtKernelInfo* info) noexcept;
  // x [N, C, H, W]; w [M, C / group, KH, KW]; x_zero_point, w_zero_point scalars
  // -> int32 [N, M, OH, OW].
  Ort::Status Compute(OrtKernelContext* ctx, const Tensor<TX>& x,
                      const Tensor<TW>& w, const Tensor<TX>& x_zero_point,
                      const Tensor<TW>& w_zero_point, Tensor<int32_t>& y);

  std::string label_, init_error_;
};

// The op above with Requantize fused (scale, bias [M], y_scale scalar or [M], y_zero_point of type
// TY; Requantize's attributes lo, hi, thresholds, and its pool's as pool_kernel_shape,
// pool_strides, pool_pads, pool_dilations): the next layer's codes, no int32 tensor between.
template <typename TX, typename TW, typename TY>
struct DirectConvRequantizeOp : DirectConvState {
  DirectConvRequantizeOp(const OrtApi* api, const OrtKernelInfo* info) noexcept;
  Ort::Status Compute(OrtKernelContext* ctx, const Tensor<TX>& x,
                      const Tensor<TW>& w, const Tensor<TX>& x_zero_point,
                      const Tensor<TW>& w_zero_point,
                      const Tensor<float>& scale, const Tensor<float>& bias,
                      const Tensor<float>& y_scale,
                      const Tensor<TY>& y_zero_point, Tensor<TY>& y);

  std::string label_, init_error_;
  RequantizeSteps steps_;
};

}  // namespace qcompile
