// quantize_pack__sse2: QuantizePack's rows, four lanes at a time in SSE2 (baseline on x86-64;
// built only for x86), every lane rounding exactly as common/quantize.h.
#include <emmintrin.h>

#include "../common/quantize_sse2.h"
#include "quantize_pack.h"

namespace qcompile {
namespace bitserial {
namespace {

template <Rounding R>
bool QuantRowSse2(const float* x, int64_t n, const QuantParams& qp, int32_t* code) {
  // Four lanes of QuantRowScalar<R> (common/quantize_sse2.h), then the integer value range check.
  const __m128 sc = _mm_set1_ps(qp.sc), zp = _mm_set1_ps(qp.zp);
  const __m128 qmin = _mm_set1_ps(qp.qmin), qmax = _mm_set1_ps(qp.qmax);
  const __m128i zpi = _mm_set1_epi32(qp.zpi);
  const __m128i vmin = _mm_set1_epi32(qp.vmin), vmax = _mm_set1_epi32(qp.vmax);
  __m128i bad = _mm_setzero_si128();
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const __m128 q = QuantCodeSse2<R>(_mm_loadu_ps(x + i), sc, zp, qmin, qmax);
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
