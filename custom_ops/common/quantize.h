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

// Round half to even without a libm call (std::nearbyint is one on baseline x86-64, ~10 ns):
// adding 2^23 moves |v| to where the float spacing is 1, so the addition itself rounds to the
// nearest integer, ties to even (default rounding mode; -ffp-contract=off, no fast-math), and the
// subtraction is exact. |v| >= 2^23 is already an integer; NaN and infinities pass through; the
// sign is kept (-0.4 gives -0.0, as std::nearbyint). Written as selects, so loops vectorise.
inline float RoundHalfEven(float v) {
  constexpr float kTwo23 = 8388608.0f;
  const float a = std::fabs(v);
  const float r = std::copysign((a + kTwo23) - kTwo23, v);
  return a < kTwo23 ? r : v;
}

// The one rounding implementation of the library (QONNX rounding modes).
template <Rounding R>
inline float RoundAs(float v) {
  switch (R) {
    case Rounding::kRound:
      return RoundHalfEven(v);
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
