#include "binarize_pack.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace qcompile {
namespace xnor {
namespace {

constexpr int64_t kWord = 64;

// The 8x8 bit matrix in x (byte i = row i, bit j = column j) transposed: byte j, bit i.
inline uint64_t Transpose8x8(uint64_t x) {
  uint64_t t = (x ^ (x >> 7)) & 0x00AA00AA00AA00AAull;
  x ^= t ^ (t << 7);
  t = (x ^ (x >> 14)) & 0x0000CCCC0000CCCCull;
  x ^= t ^ (t << 14);
  t = (x ^ (x >> 28)) & 0x00000000F0F0F0F0ull;
  return x ^ t ^ (t << 28);
}

// One channel's sign bits of pixels [w, w + n), bit p for pixel w + p.
inline uint32_t SignBits(const float* x, int64_t n) {
  uint32_t bits = 0;
  int64_t p = 0;
#if defined(__SSE2__)
  const __m128 zero = _mm_setzero_ps();
  for (; p + 4 <= n; p += 4)  // cmpnge: !(x >= 0), true for NaN as the scalar test below
    bits |= static_cast<uint32_t>(_mm_movemask_ps(_mm_cmpnge_ps(_mm_loadu_ps(x + p), zero))) << p;
#endif
  for (; p < n; ++p) bits |= static_cast<uint32_t>(!(x[p] >= 0.0f)) << p;
  return bits;
}

}  // namespace

// Blocks of 8 pixels x up to 64 channels (one output word per pixel): each channel's 8 sign bits
// from two 4-wide compares, then the 64 x 8 bit matrix transposed 8 channels at a time, so every
// output word is written once (the plain loop OR-ed one bit into it per channel).
void BinarizePackRow(const BinarizeRowArgs& a, int64_t n, int64_t h, uint64_t* out) {
  const int64_t Cg = a.C / a.G, Wg = (Cg + kWord - 1) / kWord, XW = a.G * Wg;
  const int64_t plane = a.H * a.W;
  for (int64_t w0 = 0; w0 < a.W; w0 += 8) {
    const int64_t np = a.W - w0 < 8 ? a.W - w0 : 8;
    for (int64_t g = 0; g < a.G; ++g) {
      for (int64_t k = 0; k < Wg; ++k) {
        const int64_t c0 = g * Cg + k * kWord;
        const int64_t nc = Cg - k * kWord < kWord ? Cg - k * kWord : kWord;
        const float* x = a.x + ((n * a.C + c0) * a.H + h) * a.W + w0;
        uint64_t words[8] = {};
        for (int64_t b = 0; b * 8 < nc; ++b) {
          uint64_t m = 0;  // byte i: channel c0 + 8b + i, bit p: pixel w0 + p
          for (int64_t i = 0; i < 8 && b * 8 + i < nc; ++i)
            m |= static_cast<uint64_t>(SignBits(x + (b * 8 + i) * plane, np)) << (8 * i);
          const uint64_t t = Transpose8x8(m);  // byte p: the 8 channels' bits of pixel p
          for (int64_t p = 0; p < np; ++p) words[p] |= ((t >> (8 * p)) & 0xFFull) << (8 * b);
        }
        uint64_t* o = out + w0 * XW + g * Wg + k;
        for (int64_t p = 0; p < np; ++p) o[p * XW] = words[p];
      }
    }
  }
}

}  // namespace xnor
}  // namespace qcompile
