// xnor_threshold__sse2: eight pixels' threshold words built in SSE2 registers, the remaining
// pixels by the scalar loop. Built only for x86 (SSE2 is baseline on x86-64).
#include <emmintrin.h>

#include <algorithm>

#include "../common/conv_attrs.h"
#include "xnor_threshold.h"

namespace qcompile {
namespace xnor {

void xnor_threshold__sse2(const ThresholdArgs& a, const int32_t* d_row, uint64_t* row) {
  const int32_t* thr = a.thr;
  const int32_t* dir = a.dir;
  for (int64_t og = 0; og < a.OG; ++og)
    for (int64_t k = 0; k < a.Wg_out; ++k) {
      const int64_t m0 = og * a.Mg_out + k * kWordBits;
      const int64_t nb = std::min<int64_t>(kWordBits, a.Mg_out - k * kWordBits);
      const int64_t word = og * a.Wg_out + k;
      int64_t ow = 0;
      for (; ow + 8 <= a.OW; ow += 8) {
        // Four 2-pixel registers of 64-bit words; per channel, 8 compares as 2 x 4 int32
        // lanes widened to 64-bit masks (unpack), ANDed with the channel's bit.
        __m128i acc[4] = {_mm_setzero_si128(), _mm_setzero_si128(), _mm_setzero_si128(),
                          _mm_setzero_si128()};
        for (int64_t j = 0; j < nb; ++j) {
          const int64_t m = m0 + j;
          const int32_t f = dir[m] > 0 ? 0 : ~int32_t{0};
          const __m128i fv = _mm_set1_epi32(f), tv = _mm_set1_epi32(thr[m] ^ f);
          const __m128i bit = _mm_set1_epi64x(static_cast<long long>(uint64_t{1} << j));
          const __m128i* dm = reinterpret_cast<const __m128i*>(d_row + m * a.plane + ow);
          for (int h = 0; h < 2; ++h) {
            const __m128i v = _mm_xor_si128(_mm_loadu_si128(dm + h), fv);
            const __m128i lt = _mm_cmplt_epi32(v, tv);  // (D ^ f) < (t ^ f)
            acc[2 * h] = _mm_or_si128(acc[2 * h], _mm_and_si128(_mm_unpacklo_epi32(lt, lt), bit));
            acc[2 * h + 1] =
                _mm_or_si128(acc[2 * h + 1], _mm_and_si128(_mm_unpackhi_epi32(lt, lt), bit));
          }
        }
        alignas(16) uint64_t bits[8];
        for (int q = 0; q < 4; ++q) _mm_store_si128(reinterpret_cast<__m128i*>(bits) + q, acc[q]);
        for (int p = 0; p < 8; ++p) row[(ow + p) * a.YW + word] = bits[p];
      }
      ThresholdWordScalar(a, d_row, row, word, m0, nb, ow);
    }
}

}  // namespace xnor
}  // namespace qcompile
