// quantize_pack__sse2: QuantizePack's rows, four lanes at a time in SSE2 (baseline on x86-64;
// built only for x86), every lane rounding exactly as common/quantize.h.
#include <emmintrin.h>

#include "quantize_pack.h"

namespace qcompile {
namespace bitserial {
namespace {

template <Rounding R>
bool QuantRowSse2(const float* x, int64_t n, const QuantParams& qp, int32_t* code) {
  // Four lanes of QuantRowScalar<R>: IEEE divide and add, the rounding (below) and the clamp
  // as selects, so every lane rounds exactly as the scalar code does.
  const __m128 sc = _mm_set1_ps(qp.sc), zp = _mm_set1_ps(qp.zp);
  const __m128 qmin = _mm_set1_ps(qp.qmin), qmax = _mm_set1_ps(qp.qmax);
  const __m128 two23 = _mm_set1_ps(8388608.0f), sign = _mm_set1_ps(-0.0f);
  const __m128 one = _mm_set1_ps(1.0f);
  const __m128i zpi = _mm_set1_epi32(qp.zpi);
  const __m128i vmin = _mm_set1_epi32(qp.vmin), vmax = _mm_set1_epi32(qp.vmax);
  auto select = [](__m128 m, __m128 a, __m128 b) {
    return _mm_or_ps(_mm_and_ps(m, a), _mm_andnot_ps(m, b));
  };
  // |v| >= 2^23 is already an integer and NaN passes through (as RoundAs); below that:
  // kRound: RoundHalfEven's 2^23 trick; kRoundToZero: truncation through int32 (exact for
  // |v| < 2^23); kCeil / kFloor: that truncation plus / minus 1 where it fell below / above
  // v; the sign of v is kept (so zeros come out signed as std::trunc / ceil / floor give them).
  auto round = [&](__m128 v) {
    const __m128 a = _mm_andnot_ps(sign, v);
    __m128 r;
    if (R == Rounding::kRound) {
      r = _mm_sub_ps(_mm_add_ps(a, two23), two23);
    } else {
      const __m128 t = _mm_cvtepi32_ps(_mm_cvttps_epi32(v));
      __m128 u = t;
      if (R == Rounding::kCeil) u = select(_mm_cmplt_ps(t, v), _mm_add_ps(t, one), t);
      if (R == Rounding::kFloor) u = select(_mm_cmpgt_ps(t, v), _mm_sub_ps(t, one), t);
      r = _mm_andnot_ps(sign, u);  // |u|; u is 0 or has v's sign
    }
    r = _mm_or_ps(r, _mm_and_ps(v, sign));
    return select(_mm_cmplt_ps(a, two23), r, v);
  };
  __m128i bad = _mm_setzero_si128();
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    __m128 q = round(_mm_add_ps(_mm_div_ps(_mm_loadu_ps(x + i), sc), zp));
    q = select(_mm_cmplt_ps(q, qmin), qmin, select(_mm_cmpgt_ps(q, qmax), qmax, q));
    const __m128 nan = _mm_cmpunord_ps(q, q);
    const __m128i c = _mm_sub_epi32(_mm_cvttps_epi32(_mm_andnot_ps(nan, q)), zpi);
    bad = _mm_or_si128(bad, _mm_castps_si128(nan));
    bad = _mm_or_si128(bad, _mm_or_si128(_mm_cmplt_epi32(c, vmin), _mm_cmpgt_epi32(c, vmax)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(code + i), c);
  }
  const bool any = _mm_movemask_epi8(bad) != 0;
  return QuantRowScalar<R>(x + i, n - i, qp, code + i) || any;
}

void OrPlaneBitsSse2(const int32_t* code, int64_t n, int p, int shift, uint64_t* plane) {
  int64_t w = 0;
  const __m128i one = _mm_set1_epi32(1), zero = _mm_setzero_si128();
  const __m128i cnt = _mm_cvtsi32_si128(shift);
  for (; w + 4 <= n; w += 4) {
    const __m128i b = _mm_and_si128(
        _mm_srli_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(code + w)), p), one);
    __m128i* dst = reinterpret_cast<__m128i*>(plane + w);
    _mm_storeu_si128(dst, _mm_or_si128(_mm_loadu_si128(dst),
                                       _mm_sll_epi64(_mm_unpacklo_epi32(b, zero), cnt)));
    _mm_storeu_si128(dst + 1, _mm_or_si128(_mm_loadu_si128(dst + 1),
                                           _mm_sll_epi64(_mm_unpackhi_epi32(b, zero), cnt)));
  }
  OrPlaneBitsScalar(code + w, n - w, p, shift, plane + w);
}

}  // namespace

const QuantPackKernel quantize_pack__sse2 = {
    {QuantRowSse2<Rounding::kRound>, QuantRowSse2<Rounding::kCeil>,
     QuantRowSse2<Rounding::kFloor>, QuantRowSse2<Rounding::kRoundToZero>},
    OrPlaneBitsSse2};

}  // namespace bitserial
}  // namespace qcompile
