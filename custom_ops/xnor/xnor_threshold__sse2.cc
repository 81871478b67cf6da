// xnor_threshold__sse2: the threshold words of eight (then four) pixels from SSE2 compares and
// movemasks, the remaining pixels by the scalar loop. Built only for x86 (SSE2 is baseline on x86-64).
#include <emmintrin.h>

#include <algorithm>

#include "../common/conv_attrs.h"
#include "bit_transpose.h"
#include "xnor_threshold.h"

namespace qcompile {
namespace xnor {

namespace {

// Channel j's bits of `count` (4 or 8) pixels from D: (D ^ f) < (t ^ f), 4 lanes per compare,
// as a byte (bit p: pixel p).
inline uint64_t ChannelByte(const int32_t* dm, __m128i fv, __m128i tv, int count) {
  const __m128i* d = reinterpret_cast<const __m128i*>(dm);
  uint64_t bits = static_cast<uint64_t>(
      _mm_movemask_ps(_mm_castsi128_ps(_mm_cmplt_epi32(_mm_xor_si128(_mm_loadu_si128(d), fv), tv))));
  if (count == 8)
    bits |= static_cast<uint64_t>(_mm_movemask_ps(
                _mm_castsi128_ps(_mm_cmplt_epi32(_mm_xor_si128(_mm_loadu_si128(d + 1), fv), tv))))
            << 4;
  return bits;
}

}  // namespace

// Per block of 8 (then 4) pixels: each channel's pixel bits as one byte (two compares and
// movemasks), the [channels x pixels] bit matrix transposed 8 x 8 at a time into the pixels'
// words, each written once; the last < 4 pixels by the scalar loop.
void xnor_threshold__sse2(const ThresholdArgs& a, const int32_t* d_row, uint64_t* row) {
  const int32_t* thr = a.thr;
  const int32_t* dir = a.dir;
  for (int64_t og = 0; og < a.OG; ++og)
    for (int64_t k = 0; k < a.Wg_out; ++k) {
      const int64_t m0 = og * a.Mg_out + k * kWordBits;
      const int64_t nb = std::min<int64_t>(kWordBits, a.Mg_out - k * kWordBits);
      const int64_t word = og * a.Wg_out + k;
      int64_t ow = 0;
      for (int count = 8; count >= 4; count -= 4) {
        for (; ow + count <= a.OW; ow += count) {
          uint64_t m[8] = {};  // m[b]: byte i holds channel m0 + 8b + i's pixel bits
          for (int64_t j = 0; j < nb; ++j) {
            const int64_t c = m0 + j;
            const int32_t f = dir[c] > 0 ? 0 : ~int32_t{0};
            m[j / 8] |= ChannelByte(d_row + c * a.plane + ow, _mm_set1_epi32(f),
                                    _mm_set1_epi32(thr[c] ^ f), count)
                        << (8 * (j % 8));
          }
          uint64_t words[8] = {};
          for (int64_t b = 0; b * 8 < nb; ++b) {
            const uint64_t t = Transpose8x8(m[b]);  // byte p: the 8 channels' bits of pixel p
            for (int p = 0; p < 8; ++p) words[p] |= ((t >> (8 * p)) & 0xFFull) << (8 * b);
          }
          for (int p = 0; p < count; ++p) row[(ow + p) * a.YW + word] = words[p];
        }
      }
      ThresholdWordScalar(a, d_row, row, word, m0, nb, ow);
    }
}

}  // namespace xnor
}  // namespace qcompile
