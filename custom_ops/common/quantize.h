// QONNX Quant's float32 steps (custom_ops/SPEC.md, "Quant and IntQuant"), shared by Quant/IntQuant
// and the ops that quantize their float input themselves (ShiftConv, ShiftGemm), so that every
// one of them rounds bit for bit alike.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>

namespace qcompile {

enum class Rounding { kRound, kCeil, kFloor, kRoundToZero };

// "ROUND", "CEIL", "FLOOR", "ROUND_TO_ZERO"; false for any other name.
inline bool ParseRounding(const std::string& mode, Rounding* r) {
  if (mode == "ROUND") {
    *r = Rounding::kRound;
  } else if (mode == "CEIL") {
    *r = Rounding::kCeil;
  } else if (mode == "FLOOR") {
    *r = Rounding::kFloor;
  } else if (mode == "ROUND_TO_ZERO") {
    *r = Rounding::kRoundToZero;
  } else {
    return false;
  }
  return true;
}

template <Rounding R>
inline float RoundAs(float v) {
  switch (R) {
    case Rounding::kRound:
      return std::nearbyint(v);  // half to even in the default rounding mode
    case Rounding::kCeil:
      return std::ceil(v);
    case Rounding::kFloor:
      return std::floor(v);
    case Rounding::kRoundToZero:
      return std::trunc(v);
  }
  return v;
}

// q = clamp(round(x / scale + zeropt), qmin, qmax): one divide, one add, round, clamp, in
// float32. As np.clip, the clamp keeps NaN and -0.0 as they are.
template <Rounding R>
inline float QuantCode(float x, float scale, float zeropt, float qmin, float qmax) {
  const float q = RoundAs<R>(x / scale + zeropt);
  return q < qmin ? qmin : (q > qmax ? qmax : q);
}

// qmin/qmax of a `bitwidth`-bit grid, in double then rounded to float32 as the numpy reference
// (qcompile.ops.qonnx.int_range) computes them.
inline void QuantRange(double bitwidth, int64_t is_signed, int64_t narrow, float* qmin,
                       float* qmax) {
  double lo, hi;
  if (is_signed) {
    lo = -std::exp2(bitwidth - 1.0) + static_cast<double>(narrow);
    hi = std::exp2(bitwidth - 1.0) - 1.0;
  } else {
    lo = 0.0;
    hi = std::exp2(bitwidth) - 1.0 - static_cast<double>(narrow);
  }
  *qmin = static_cast<float>(lo);
  *qmax = static_cast<float>(hi);
}

}  // namespace qcompile
