// Bit p of up to 64 int32 codes gathered into one word (bit j = bit p of v[j]): the packed
// planes' inner step. SSE2 (baseline on x86-64) shifts bit p of four codes into their sign bits
// and collects them with movmskps; elsewhere one bit at a time.
#pragma once

#include <cstdint>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

namespace qcompile {

inline uint64_t GatherBit(const int32_t* v, int64_t n, int p) {
  uint64_t word = 0;
  int64_t j = 0;
#ifdef __SSE2__
  const __m128i shift = _mm_cvtsi32_si128(31 - p);
  for (; j + 4 <= n; j += 4) {
    const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(v + j));
    const int bits = _mm_movemask_ps(_mm_castsi128_ps(_mm_sll_epi32(c, shift)));
    word |= static_cast<uint64_t>(bits) << j;
  }
#endif
  for (; j < n; ++j) word |= static_cast<uint64_t>((v[j] >> p) & 1) << j;
  return word;
}

}  // namespace qcompile
