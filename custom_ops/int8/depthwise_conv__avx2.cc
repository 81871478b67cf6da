// DepthwiseConvInteger's sums with AVX2 (built with -mavx2): 16 outputs at a time held in
// registers over all taps. Two taps at once: their runs interleaved (vpunpck*wd) and vpmaddwd
// against the interleaved weight pair give w0 x0 + w1 x1 per output in int32, exact for the
// kernel's |x|, |w| <= 255. The unpacks work within 128-bit halves, so the two accumulators hold
// outputs {0-3, 8-11} and {4-7, 12-15}; one permute per store puts them back in order.
#include <immintrin.h>

#include "depthwise_conv.h"
#include "depthwise_kernel.h"

namespace qcompile {

void DepthwiseSumAvx2(const dw::Geometry& g, const int64_t* runs, const int16_t* phases,
                      const int32_t* wv, int32_t* acc) {
  const dw::TapPairs pairs(g, runs, phases, wv);
  const int64_t n = g.Run();
  for (int64_t i = 0; i < n; i += 16) {
    __m256i lo = _mm256_setzero_si256(), hi = lo;
    for (int64_t p = 0; p < pairs.count(); ++p) {
      const __m256i wp = _mm256_set1_epi32(pairs.weight(p));
      const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(pairs.run(2 * p) + i));
      const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(pairs.run(2 * p + 1) + i));
      lo = _mm256_add_epi32(lo, _mm256_madd_epi16(_mm256_unpacklo_epi16(x0, x1), wp));
      hi = _mm256_add_epi32(hi, _mm256_madd_epi16(_mm256_unpackhi_epi16(x0, x1), wp));
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + i), _mm256_permute2x128_si256(lo, hi, 0x20));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + i + 8),
                        _mm256_permute2x128_si256(lo, hi, 0x31));
  }
}

}  // namespace qcompile
