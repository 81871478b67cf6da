// qcompile::DepthwiseConvInteger (custom_ops/SPEC.md): onnxruntime's ConvInteger for a depthwise
// layer (group = input channels = output channels), the same inputs, attributes and int32 sums.
// onnxruntime runs a depthwise ConvInteger as one tiny GEMM per channel (K = KH KW), several
// times slower than its float depthwise conv, which kept MobileNet's depthwise layers float, each
// wrapped in a DequantizeLinear, layout reorders, QuantizeLinear and Clip.
#pragma once

#include <cstdint>
#include <string>

#include "../common/conv_attrs.h"
#include "../common/kernel_select.h"
#include "../common/op_util.h"
#include "codes.h"
#include "depthwise_kernel.h"

namespace qcompile {

void DepthwiseSumPortable(const dw::Geometry& g, const int64_t* runs, const int16_t* phases,
                          const int32_t* wv, int32_t* acc);
#ifdef QCOMPILE_HAVE_AVX512VNNI
void DepthwiseSumVnni(const dw::Geometry& g, const int64_t* runs, const int16_t* phases,
                      const int32_t* wv, int32_t* acc);
#endif
#ifdef QCOMPILE_HAVE_AVX2
void DepthwiseSumAvx2(const dw::Geometry& g, const int64_t* runs, const int16_t* phases,
                      const int32_t* wv, int32_t* acc);
#endif

struct DepthwiseVariant {
  VariantId id;
  dw::SumChannelFn sum;
};
const VariantTable<DepthwiseVariant>& DepthwiseVariants();

// What both depthwise ops read from their node: the conv attributes, group (must equal the
// channels) and the sum kernel (the variant table's pick: attribute kernel, QCOMPILE_DW_KERNEL).
struct DepthwiseConvState {
  void Init(const Attrs& at, const std::string& label);

  ConvAttrs attrs_;  // kernel_shape, strides, pads, dilations
  int64_t group_ = 0;
  dw::SumChannelFn sum_ = nullptr;
};

// TX, TW: int8_t or uint8_t, the types of x and w (ConvInteger's T1, T2); four kernels, one name.
template <typename TX, typename TW>
struct DepthwiseConvIntegerOp : DepthwiseConvState {
  DepthwiseConvIntegerOp(const OrtApi* api, const OrtKernelInfo* info) noexcept;
  // x [N, C, H, W]; w [C, 1, KH, KW]; x_zero_point, w_zero_point scalars -> int32 [N, C, OH, OW].
  Ort::Status Compute(OrtKernelContext* ctx, const Tensor<TX>& x,
                      const Tensor<TW>& w, const Tensor<TX>& x_zero_point,
                      const Tensor<TW>& w_zero_point, Tensor<int32_t>& y);

  std::string label_, init_error_;
};

// The op above with qcompile::Requantize's epilogue fused: the sums become the next layer's codes
// (scale, bias, y_scale scalar or [C], y_zero_point of type TY; attributes lo, hi) without the
// int32 tensor in between. TY: int8_t or uint8_t; eight kernels, one name.
template <typename TX, typename TW, typename TY>
struct DepthwiseConvRequantizeOp : DepthwiseConvState {
  DepthwiseConvRequantizeOp(const OrtApi* api, const OrtKernelInfo* info) noexcept;
  Ort::Status Compute(OrtKernelContext* ctx, const Tensor<TX>& x,
                      const Tensor<TW>& w, const Tensor<TX>& x_zero_point,
                      const Tensor<TW>& w_zero_point,
                      const Tensor<float>& scale, const Tensor<float>& bias,
                      const Tensor<float>& y_scale,
                      const Tensor<TY>& y_zero_point, Tensor<TY>& y);

  std::string label_, init_error_;
  int64_t lo_ = 0, hi_ = 0;  // the codes' clamp (attributes lo / hi; default TY's range)
  const CodesVariant* codes_ = nullptr;  // Requantize's best codes kernel here
};

}  // namespace qcompile
