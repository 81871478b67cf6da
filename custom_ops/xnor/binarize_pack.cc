#include "binarize_pack.h"

#include "bit_transpose.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace qcompile {
namespace xnor {
namespace {

constexpr int64_t kWord = 64;

// One channel's sign bits of n consecutive pixels into bytes (bit p % 8 of byte p / 8 for pixel
// p; the last byte's unused bits 0): !(x >= 0), true for NaN.
inline void SignBytes(const float* x, int64_t n, uint8_t* bytes) {
  int64_t p = 0;
#if defined(__SSE2__)
  const __m128 zero = _mm_setzero_ps();
  for (; p + 8 <= n; p += 8) {  // cmpnge: !(x >= 0), as the scalar test below
    const int lo = _mm_movemask_ps(_mm_cmpnge_ps(_mm_loadu_ps(x + p), zero));
    const int hi = _mm_movemask_ps(_mm_cmpnge_ps(_mm_loadu_ps(x + p + 4), zero));
    bytes[p / 8] = static_cast<uint8_t>(lo | (hi << 4));
  }
#endif
  for (; p < n; p += 8) {
    uint32_t b = 0;
    for (int64_t q = p; q < p + 8 && q < n; ++q) b |= static_cast<uint32_t>(!(x[q] >= 0.0f)) << (q - p);
    bytes[p / 8] = static_cast<uint8_t>(b);
  }
}

// A span of pixels, one output word (up to 64 channels) at a time: first each channel's sign
// bytes over the whole span (signs(channel's offset of pixel p0, count, bytes): one front-to-back
// pass per channel), then the [channels x pixels] bit matrix transposed 8 x 8 at a time into the
// pixels' words, each written once.
template <typename Signs>
void PackSpan(const BinarizeRowArgs& a, int64_t n, int64_t p0, int64_t p1, uint64_t* out,
              const Signs& signs) {
  const int64_t Cg = a.C / a.G, Wg = (Cg + kWord - 1) / kWord, XW = a.G * Wg;
  const int64_t plane = a.H * a.W, np = p1 - p0, groups = (np + 7) / 8;
  uint8_t bytes[kWord][kPackSpan / 8];
  for (int64_t g = 0; g < a.G; ++g) {
    for (int64_t k = 0; k < Wg; ++k) {
      const int64_t c0 = g * Cg + k * kWord;
      const int64_t nc = Cg - k * kWord < kWord ? Cg - k * kWord : kWord;
      const int64_t at = (n * a.C + c0) * plane + p0;
      for (int64_t i = 0; i < nc; ++i) signs(at + i * plane, np, bytes[i]);
      for (int64_t i = nc; i < (nc + 7) / 8 * 8; ++i)  // a partial last byte of channels: 0 bits
        for (int64_t q = 0; q < groups; ++q) bytes[i][q] = 0;
      uint64_t* o = out + g * Wg + k;
      for (int64_t q = 0; q < groups; ++q) {
        uint64_t words[8] = {};
        for (int64_t b = 0; b * 8 < nc; ++b) {
          uint64_t m = 0;  // byte i: channel c0 + 8b + i, bit p: pixel p0 + 8q + p
          for (int64_t i = 0; i < 8; ++i) m |= static_cast<uint64_t>(bytes[b * 8 + i][q]) << (8 * i);
          const uint64_t t = Transpose8x8(m);  // byte p: the 8 channels' bits of pixel p
          for (int64_t p = 0; p < 8; ++p) words[p] |= ((t >> (8 * p)) & 0xFFull) << (8 * b);
        }
        const int64_t count = np - 8 * q < 8 ? np - 8 * q : 8;
        for (int64_t p = 0; p < count; ++p) o[(8 * q + p) * XW] = words[p];
      }
    }
  }
}

}  // namespace

void BinarizePackSpan(const BinarizeRowArgs& a, int64_t n, int64_t p0, int64_t p1, uint64_t* out) {
  PackSpan(a, n, p0, p1, out,
           [&](int64_t at, int64_t count, uint8_t* bytes) { SignBytes(a.x + at, count, bytes); });
}

}  // namespace xnor
}  // namespace qcompile
