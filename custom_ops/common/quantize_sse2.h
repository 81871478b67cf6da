// QONNX Quant's code q = clamp(round(x / scale + zeropt), qmin, qmax) four lanes at a time in
// SSE2 (baseline on x86-64), every lane rounding exactly as common/quantize.h's QuantCode: the
// IEEE divide and add, the rounding and the clamp as selects (NaN passes through the clamp).
#pragma once

#if defined(__SSE2__)
#include <emmintrin.h>

#include "quantize.h"

namespace qcompile {

inline __m128 SelectSse2(__m128 m, __m128 a, __m128 b) {
  return _mm_or_ps(_mm_and_ps(m, a), _mm_andnot_ps(m, b));
}

// RoundAs<R> per lane. |v| >= 2^23 is already an integer and NaN passes through; below that:
// kRound: RoundHalfEven's 2^23 trick; kRoundToZero: truncation through int32 (exact for
// |v| < 2^23); kCeil / kFloor: that truncation plus / minus 1 where it fell below / above v;
// the sign of v is kept (so zeros come out signed as std::trunc / ceil / floor give them).
template <Rounding R>
inline __m128 RoundAsSse2(__m128 v) {
  const __m128 two23 = _mm_set1_ps(8388608.0f), sign = _mm_set1_ps(-0.0f);
  const __m128 a = _mm_andnot_ps(sign, v);
  __m128 r;
  if (R == Rounding::kRound) {
    r = _mm_sub_ps(_mm_add_ps(a, two23), two23);
  } else {
    const __m128 one = _mm_set1_ps(1.0f);
    const __m128 t = _mm_cvtepi32_ps(_mm_cvttps_epi32(v));
    __m128 u = t;
    if (R == Rounding::kCeil) u = SelectSse2(_mm_cmplt_ps(t, v), _mm_add_ps(t, one), t);
    if (R == Rounding::kFloor) u = SelectSse2(_mm_cmpgt_ps(t, v), _mm_sub_ps(t, one), t);
    r = _mm_andnot_ps(sign, u);  // |u|; u is 0 or has v's sign
  }
  r = _mm_or_ps(r, _mm_and_ps(v, sign));
  return SelectSse2(_mm_cmplt_ps(a, two23), r, v);
}

template <Rounding R>
inline __m128 QuantCodeSse2(__m128 x, __m128 scale, __m128 zeropt, __m128 qmin, __m128 qmax) {
  const __m128 q = RoundAsSse2<R>(_mm_add_ps(_mm_div_ps(x, scale), zeropt));
  return SelectSse2(_mm_cmplt_ps(q, qmin), qmin, SelectSse2(_mm_cmpgt_ps(q, qmax), qmax, q));
}

}  // namespace qcompile
#endif
