#include "trunc_op.h"

#include <cctype>
#include <cmath>

#include "../common/quantize.h"
#include "elementwise.h"

namespace qcompile {
namespace {

using elementwise::BroadcastStrides;
using elementwise::Elementwise;

bool ParseTruncRounding(std::string mode, TruncRounding* r) {
  for (char& c : mode) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (mode == "ROUND" || mode == "HALF_EVEN") *r = TruncRounding::kHalfEven;
  else if (mode == "CEIL") *r = TruncRounding::kCeil;
  else if (mode == "FLOOR") *r = TruncRounding::kFloor;
  else if (mode == "UP") *r = TruncRounding::kUp;
  else if (mode == "DOWN") *r = TruncRounding::kDown;
  else if (mode == "HALF_UP") *r = TruncRounding::kHalfUp;
  else if (mode == "HALF_DOWN") *r = TruncRounding::kHalfDown;
  else return false;
  return true;
}

// np.sign in float32: NaN stays NaN, ±0 gives 0.
inline float Sign(float v) { return v > 0.0f ? 1.0f : (v < 0.0f ? -1.0f : v * 0.0f); }

template <TruncRounding R>
inline float RoundTrunc(float v) {
  switch (R) {
    case TruncRounding::kHalfEven:
      return std::nearbyint(v);
    case TruncRounding::kCeil:
      return std::ceil(v);
    case TruncRounding::kFloor:
      return std::floor(v);
    case TruncRounding::kUp:
      return Sign(v) * std::ceil(std::fabs(v));
    case TruncRounding::kDown:
      return std::trunc(v);
    case TruncRounding::kHalfUp:
      return Sign(v) * std::floor(std::fabs(v) + 0.5f);
    case TruncRounding::kHalfDown:
      return Sign(v) * std::ceil(std::fabs(v) - 0.5f);
  }
  return v;
}

// 2^round(log2(output_scale / scale)) as float32, computed exactly without a log: with
// ratio = m * 2^e, m in [0.5, 1), round(log2 ratio) is e when m * m >= 0.5 (exact in double:
// m has 24 bits), else e - 1; 2^(k + 1/2) is irrational, so there is no tie (SPEC.md, Trunc).
inline float TruncScale(float scale, float output_scale) {
  const float ratio = output_scale / scale;
  if (!(ratio > 0.0f) || !std::isfinite(ratio)) {
    return static_cast<float>(std::exp2(std::nearbyint(std::log2(static_cast<double>(ratio)))));
  }
  int e = 0;
  const double m = std::frexp(static_cast<double>(ratio), &e);
  return static_cast<float>(std::ldexp(1.0, m * m >= 0.5 ? e : e - 1));
}

template <TruncRounding R>
void TruncV2(OrtKernelContext* ctx, const std::vector<int64_t>& xs,
             const std::vector<int64_t> (&strides)[3], const float* x, const float* scale,
             const float* zeropt, const float* out_scale, float qmin, float qmax, float* y) {
  Elementwise<3>(ctx, xs, strides, [&](int64_t i, const int64_t* off) {
    const float s = scale[off[0]], z = zeropt[off[1]], so = out_scale[off[2]];
    const float t = TruncScale(s, so);
    float v = std::nearbyint(x[i] / s + z) / t;
    v = v > qmax ? qmax : (v < qmin ? qmin : v);  // clamp before rounding, as qonnx does
    v = RoundTrunc<R>(v);
    y[i] = (v - z / t) * so;
  });
}

template <TruncRounding R>
void TruncV1(OrtKernelContext* ctx, const std::vector<int64_t>& xs,
             const std::vector<int64_t> (&strides)[2], const float* x, const float* scale,
             const float* zeropt, float t, float* y) {
  Elementwise<2>(ctx, xs, strides, [&](int64_t i, const int64_t* off) {
    const float s = scale[off[0]], z = zeropt[off[1]];
    const float v = RoundTrunc<R>(std::nearbyint(x[i] / s + z) / t);
    y[i] = (v - z) * s;
  });
}

float ScalarInput(const std::string& op, const char* name, const Tensor<float>& t) {
  if (NumElements(t.Shape()) != 1)
    Fail(op, "input ", name, ": expected a scalar (one element), got shape ", ShapeStr(t.Shape()));
  const float b = t.Data()[0];
  if (!(b >= 1.0f && b <= 32.0f) || b != std::floor(b))
    Fail(op, "input ", name, ": expected an integer bit width in [1, 32], got ", b);
  return b;
}

template <typename Fn>
void Dispatch(TruncRounding r, Fn&& fn) {
  switch (r) {
    case TruncRounding::kHalfEven: return fn(std::integral_constant<TruncRounding, TruncRounding::kHalfEven>{});
    case TruncRounding::kCeil: return fn(std::integral_constant<TruncRounding, TruncRounding::kCeil>{});
    case TruncRounding::kFloor: return fn(std::integral_constant<TruncRounding, TruncRounding::kFloor>{});
    case TruncRounding::kUp: return fn(std::integral_constant<TruncRounding, TruncRounding::kUp>{});
    case TruncRounding::kDown: return fn(std::integral_constant<TruncRounding, TruncRounding::kDown>{});
    case TruncRounding::kHalfUp: return fn(std::integral_constant<TruncRounding, TruncRounding::kHalfUp>{});
    case TruncRounding::kHalfDown: return fn(std::integral_constant<TruncRounding, TruncRounding::kHalfDown>{});
  }
}

}  // namespace

TruncOp::TruncOp(const OrtApi* api, const OrtKernelInfo* info) noexcept {
  try {
    label_ = OpLabel(api, info, "qonnx.custom_op.general::Trunc");
    size_t n_out = 0;
    Ort::ThrowOnError(api->KernelInfo_GetInputCount(info, &inputs_));
    Ort::ThrowOnError(api->KernelInfo_GetOutputCount(info, &n_out));
    if ((inputs_ != 5 && inputs_ != 6) || n_out != 1)
      Fail(label_, "expected 6 inputs (X, scale, zeropt, input_bit_width, output_scale, "
           "output_bit_width; version 1: 5, without output_scale) and 1 output, got ", inputs_,
           " and ", n_out);
    Attrs at(api, info, label_);
    signed_ = at.Int("signed", 1);
    narrow_ = at.Int("narrow", 0);
    const std::string mode = at.String("rounding_mode", "FLOOR");
    if (signed_ != 0 && signed_ != 1)
      Fail(label_, "attribute 'signed': expected 0 or 1, got ", signed_);
    if (narrow_ != 0 && narrow_ != 1)
      Fail(label_, "attribute 'narrow': expected 0 or 1, got ", narrow_);
    if (!ParseTruncRounding(mode, &rounding_))
      Fail(label_, "attribute 'rounding_mode': expected ROUND, HALF_EVEN, CEIL, FLOOR, UP, DOWN, "
           "HALF_UP or HALF_DOWN, got '", mode, "'");
  } catch (const std::exception& e) {
    init_error_ = e.what();
  }
}

Ort::Status TruncOp::Compute(OrtKernelContext* ctx, const Tensor<float>& x,
                             const Tensor<float>& scale,
                             const Tensor<float>& zeropt,
                             const Tensor<float>& input_bit_width,
                             const Tensor<float>& in4,
                             std::optional<const Tensor<float>*> in5,
                             Tensor<float>& y) {
  return GuardCompute(label_, [&] {
    if (!init_error_.empty()) throw OpError(init_error_);
    const std::vector<int64_t>& xs = x.Shape();
    const float bits_in = ScalarInput(label_, "input_bit_width", input_bit_width);
    const bool v2 = in5.has_value() && *in5 != nullptr;
    if (v2) {
      const Tensor<float>& out_scale = in4;
      const float bits_out = ScalarInput(label_, "output_bit_width", **in5);
      const std::vector<int64_t> strides[3] = {
          BroadcastStrides(label_, "scale", xs, scale.Shape()),
          BroadcastStrides(label_, "zeropt", xs, zeropt.Shape()),
          BroadcastStrides(label_, "output_scale", xs, out_scale.Shape())};
      float qmin, qmax;
      QuantRange(static_cast<double>(bits_out), signed_, narrow_, &qmin, &qmax);
      float* out = y.Allocate(xs);
      if (NumElements(xs) == 0) return;
      Dispatch(rounding_, [&](auto r) {
        TruncV2<decltype(r)::value>(ctx, xs, strides, x.Data(), scale.Data(), zeropt.Data(),
                                    out_scale.Data(), qmin, qmax, out);
      });
      return;
    }
    const float bits_out = ScalarInput(label_, "output_bit_width", in4);
    const std::vector<int64_t> strides[2] = {
        BroadcastStrides(label_, "scale", xs, scale.Shape()),
        BroadcastStrides(label_, "zeropt", xs, zeropt.Shape())};
    const float t = static_cast<float>(std::exp2(static_cast<double>(bits_in - bits_out)));
    float* out = y.Allocate(xs);
    if (NumElements(xs) == 0) return;
    Dispatch(rounding_, [&](auto r) {
      TruncV1<decltype(r)::value>(ctx, xs, strides, x.Data(), scale.Data(), zeropt.Data(), t, out);
    });
  });
}

}  // namespace qcompile
