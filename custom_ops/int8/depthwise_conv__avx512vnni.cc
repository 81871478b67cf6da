// DepthwiseConvInteger's sums with AVX-512 VNNI (built with -mavx512f -mavx512bw -mavx512vnni):
// the AVX2 kernel's loop at twice the width, 32 outputs at a time held in registers over all
// taps, and vpdpwssd doing its vpmaddwd and add in one instruction: two taps' runs interleaved
// (vpunpck*wd) times the interleaved weight pair give w0 x0 + w1 x1 per output added into int32,
// exact for |x|, |w| <= 255. The unpacks work within 128-bit lanes, so the accumulators hold
// outputs {8L..8L+3} and {8L+4..8L+7} of each lane L; two two-source permutes put them in order.
#include <immintrin.h>

#include "depthwise_conv.h"
#include "depthwise_kernel.h"

namespace qcompile {

void DepthwiseSumVnni(const dw::Geometry& g, const int64_t* runs, const int16_t* phases,
                      const int32_t* wv, int32_t* acc) {
  const dw::TapPairs pairs(g, runs, phases, wv);
  const __m512i first = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
  const __m512i second = _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
  const int64_t n = g.Run();
  for (int64_t i = 0; i < n; i += 32) {
    __m512i lo = _mm512_setzero_si512(), hi = lo;
    for (int64_t p = 0; p < pairs.count(); ++p) {
      const __m512i wp = _mm512_set1_epi32(pairs.weight(p));
      const __m512i x0 = _mm512_loadu_si512(pairs.run(2 * p) + i);
      const __m512i x1 = _mm512_loadu_si512(pairs.run(2 * p + 1) + i);
      lo = _mm512_dpwssd_epi32(lo, _mm512_unpacklo_epi16(x0, x1), wp);
      hi = _mm512_dpwssd_epi32(hi, _mm512_unpackhi_epi16(x0, x1), wp);
    }
    _mm512_storeu_si512(acc + i, _mm512_permutex2var_epi32(lo, first, hi));
    _mm512_storeu_si512(acc + i + 16, _mm512_permutex2var_epi32(lo, second, hi));
  }
}

}  // namespace qcompile
