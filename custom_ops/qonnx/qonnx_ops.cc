#include "qonnx_ops.h"

#include <cmath>

#include "../common/quantize_sse2.h"
#include "elementwise.h"

namespace qcompile {

const char kQuantName[] = "qonnx.custom_op.general::Quant";
const char kIntQuantName[] = "qonnx.custom_op.general::IntQuant";

namespace {

using elementwise::BroadcastStrides;
using elementwise::Elementwise;

// One run of values sharing scale and zero point, four lanes at a time where SSE2 is there
// (the scalar loop's clamp and rounding compile to branches, which random data mispredicts).
template <Rounding R>
void QuantRow(const float* x, float* y, int64_t n, float s, float z, float qmin, float qmax) {
  int64_t i = 0;
#if defined(__SSE2__)
  const __m128 vs = _mm_set1_ps(s), vz = _mm_set1_ps(z);
  const __m128 lo = _mm_set1_ps(qmin), hi = _mm_set1_ps(qmax);
  for (; i + 4 <= n; i += 4) {
    const __m128 q = QuantCodeSse2<R>(_mm_loadu_ps(x + i), vs, vz, lo, hi);
    _mm_storeu_ps(y + i, _mm_mul_ps(_mm_sub_ps(q, vz), vs));
  }
#endif
  for (; i < n; ++i) y[i] = (QuantCode<R>(x[i], s, z, qmin, qmax) - z) * s;
}

template <Rounding R>
void QuantKernel(OrtKernelContext* ctx, const std::vector<int64_t>& xs,
                 const std::vector<int64_t> (&strides)[2], const float* x, const float* scale,
                 const float* zeropt, float qmin, float qmax, float* y) {
  if (elementwise::ConstantAlongRows<2>(xs, strides)) {
    elementwise::ElementwiseRuns<2>(ctx, xs, strides, [&](int64_t i, int64_t n, const int64_t* off) {
      QuantRow<R>(x + i, y + i, n, scale[off[0]], zeropt[off[1]], qmin, qmax);
    });
    return;
  }
  Elementwise<2>(ctx, xs, strides, [&](int64_t i, const int64_t* off) {
    const float s = scale[off[0]], z = zeropt[off[1]];
    const float q = QuantCode<R>(x[i], s, z, qmin, qmax);
    y[i] = (q - z) * s;
  });
}

}  // namespace

// ---------------------------------------------------------------------------- BipolarQuant

BipolarQuantOp::BipolarQuantOp(const OrtApi* api, const OrtKernelInfo* info) noexcept {
  try {
    label_ = OpLabel(api, info, "qonnx.custom_op.general::BipolarQuant");
    size_t n_in = 0, n_out = 0;
    Ort::ThrowOnError(api->KernelInfo_GetInputCount(info, &n_in));
    Ort::ThrowOnError(api->KernelInfo_GetOutputCount(info, &n_out));
    if (n_in != 2 || n_out != 1)
      Fail(label_, "expected 2 inputs (X, scale) and 1 output, got ", n_in, " and ", n_out);
  } catch (const std::exception& e) {
    init_error_ = e.what();
  }
}

Ort::Status BipolarQuantOp::Compute(OrtKernelContext* ctx, const Tensor<float>& x,
                                    const Tensor<float>& scale,
                                    Tensor<float>& y) {
  return GuardCompute(label_, [&] {
    if (!init_error_.empty()) throw OpError(init_error_);
    const std::vector<int64_t>& xs = x.Shape();
    const std::vector<int64_t> strides[1] = {BroadcastStrides(label_, "scale", xs, scale.Shape())};
    float* out = y.Allocate(xs);
    if (NumElements(xs) == 0) return;
    const float* in = x.Data();
    const float* sc = scale.Data();
    Elementwise<1>(ctx, xs, strides, [&](int64_t i, const int64_t* off) {
      out[i] = (in[i] >= 0.0f ? 1.0f : -1.0f) * sc[off[0]];
    });
  });
}

// ---------------------------------------------------------------------------- Quant / IntQuant

template <const char* kName>
QuantOp<kName>::QuantOp(const OrtApi* api, const OrtKernelInfo* info) noexcept {
  try {
    label_ = OpLabel(api, info, kName);
    size_t n_in = 0, n_out = 0;
    Ort::ThrowOnError(api->KernelInfo_GetInputCount(info, &n_in));
    Ort::ThrowOnError(api->KernelInfo_GetOutputCount(info, &n_out));
    if (n_in != 4 || n_out != 1)
      Fail(label_, "expected 4 inputs (X, scale, zeropt, bitwidth) and 1 output, got ", n_in,
           " and ", n_out);
    Attrs at(api, info, label_);
    signed_ = at.Int("signed", 1);
    narrow_ = at.Int("narrow", 0);
    const std::string mode = at.String("rounding_mode", "ROUND");
    if (signed_ != 0 && signed_ != 1)
      Fail(label_, "attribute 'signed': expected 0 or 1, got ", signed_);
    if (narrow_ != 0 && narrow_ != 1)
      Fail(label_, "attribute 'narrow': expected 0 or 1, got ", narrow_);
    if (!ParseRounding(mode, &rounding_))
      Fail(label_, "attribute 'rounding_mode': expected ROUND, CEIL, FLOOR or ROUND_TO_ZERO, got '",
           mode, "'");
  } catch (const std::exception& e) {
    init_error_ = e.what();
  }
}

template <const char* kName>
Ort::Status QuantOp<kName>::Compute(OrtKernelContext* ctx, const Tensor<float>& x,
                                    const Tensor<float>& scale,
                                    const Tensor<float>& zeropt,
                                    const Tensor<float>& bitwidth,
                                    Tensor<float>& y) {
  return GuardCompute(label_, [&] {
    if (!init_error_.empty()) throw OpError(init_error_);
    const std::vector<int64_t>& xs = x.Shape();
    const std::vector<int64_t> strides[2] = {
        BroadcastStrides(label_, "scale", xs, scale.Shape()),
        BroadcastStrides(label_, "zeropt", xs, zeropt.Shape())};
    if (NumElements(bitwidth.Shape()) != 1)
      Fail(label_, "input bitwidth: expected a scalar (one element), got shape ",
           ShapeStr(bitwidth.Shape()));
    const float b = bitwidth.Data()[0];
    if (!(b >= 1.0f && b <= 32.0f))
      Fail(label_, "input bitwidth: expected a value in [1, 32], got ", b, " (shape ",
           ShapeStr(bitwidth.Shape()), ")");
    float qmin, qmax;
    QuantRange(static_cast<double>(b), signed_, narrow_, &qmin, &qmax);
    float* out = y.Allocate(xs);
    if (NumElements(xs) == 0) return;
    const float* in = x.Data();
    const float* sc = scale.Data();
    const float* zp = zeropt.Data();
    switch (rounding_) {
      case Rounding::kRound:
        QuantKernel<Rounding::kRound>(ctx, xs, strides, in, sc, zp, qmin, qmax, out);
        break;
      case Rounding::kCeil:
        QuantKernel<Rounding::kCeil>(ctx, xs, strides, in, sc, zp, qmin, qmax, out);
        break;
      case Rounding::kFloor:
        QuantKernel<Rounding::kFloor>(ctx, xs, strides, in, sc, zp, qmin, qmax, out);
        break;
      case Rounding::kRoundToZero:
        QuantKernel<Rounding::kRoundToZero>(ctx, xs, strides, in, sc, zp, qmin, qmax, out);
        break;
    }
  });
}

template struct QuantOp<kQuantName>;
template struct QuantOp<kIntQuantName>;

}  // namespace qcompile
