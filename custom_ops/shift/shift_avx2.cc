// ShiftConv / ShiftGemm int8 dot-product tile for AVX2 (custom_ops/SPEC.md, "SHIFT"; the
// packing, im2col and dispatch are in shift_kernel.cc / shift_ops.cc). Built with -mavx2 in its
// own translation unit and called only when the CPU has AVX2.
//
// Why this path multiplies instead of shifting: a · (±2^e) = ±(a << e) exactly, so the integer
// D is the same whether the product is formed by a shift or by a multiply. But on x86 one
// vpmaddubsw does 32 int8 multiply-adds (u8 x s8 -> pairs summed into 16 int16), whereas the
// variable shift vpsllvd handles only 8 int32 lanes (and every term of the shift-and-add kernel
// still needs its own sign-extend, shift, sign fix and add). So the weights are decoded once
// to int8 w_int (|w| <= 64) and D is an ordinary int8 dot product.
//
// vpmaddubsw takes one unsigned and one signed operand, so the activation codes go in offset
// by 128: u = a + 128 in [0, 255] (a is an int8 code; u is a's byte with the top bit flipped),
// and sum_k u·w = D + 128 · sum_k w, the constant removed afterwards (PackedWeights::corr).
// A zero-padded tap has a = 0, i.e. u = 128, so padding needs no other correction. Each int16
// pair sum is at most 2 · 255 · 64 = 32640 < 32767, so vpmaddubsw never saturates (the op checks
// this bound against its activation range, ShiftInt8Fits, before choosing this path); vpmaddwd
// with ones then widens the pairs into int32 lanes that are summed with wrapping adds. The true
// D fits int32 (checked when the kernel is created), so the sum taken modulo 2^32 minus the
// correction modulo 2^32 is D exactly even if the offset sum itself would overflow.
#include <immintrin.h>

#include <cstring>

#include "shift_kernel.h"

namespace qcompile {
namespace shift {
namespace {

inline int32_t Load4(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// out[r][0..15] = sum_q sum_i u[r*lda + 4q + i] * w[(q*16 + j)*4 + i] for r < R: 16 channels
// (two ymm of 8 int32 lanes, 4 consecutive k per lane) x R rows, all accumulators in registers.
template <int R>
inline void Tile(const uint8_t* u, int64_t lda, const int8_t* w, int64_t quads, int32_t* out) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i acc0[R], acc1[R];
  for (int r = 0; r < R; ++r) acc0[r] = acc1[r] = _mm256_setzero_si256();
  for (int64_t q = 0; q < quads; ++q) {
    const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + q * 64));
    const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + q * 64 + 32));
    for (int r = 0; r < R; ++r) {
      const __m256i b = _mm256_set1_epi32(Load4(u + r * lda + 4 * q));
      acc0[r] = _mm256_add_epi32(acc0[r], _mm256_madd_epi16(_mm256_maddubs_epi16(b, w0), ones));
      acc1[r] = _mm256_add_epi32(acc1[r], _mm256_madd_epi16(_mm256_maddubs_epi16(b, w1), ones));
    }
  }
  for (int r = 0; r < R; ++r) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + r * kDotBlockM), acc0[r]);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + r * kDotBlockM + 8), acc1[r]);
  }
}

}  // namespace

void DotTileAvx2(const uint8_t* u, int64_t lda, int64_t rows, const int8_t* w, int64_t K4,
                 int32_t* out) {
  static_assert(kDotBlockM == 16, "Tile holds 16 channels in two ymm");
  const int64_t quads = K4 / 4;
  int64_t r = 0;
  for (; r + 6 <= rows; r += 6) Tile<6>(u + r * lda, lda, w, quads, out + r * kDotBlockM);
  switch (rows - r) {
    case 5: Tile<5>(u + r * lda, lda, w, quads, out + r * kDotBlockM); break;
    case 4: Tile<4>(u + r * lda, lda, w, quads, out + r * kDotBlockM); break;
    case 3: Tile<3>(u + r * lda, lda, w, quads, out + r * kDotBlockM); break;
    case 2: Tile<2>(u + r * lda, lda, w, quads, out + r * kDotBlockM); break;
    case 1: Tile<1>(u + r * lda, lda, w, quads, out + r * kDotBlockM); break;
    default: break;
  }
}

}  // namespace shift
}  // namespace qcompile
