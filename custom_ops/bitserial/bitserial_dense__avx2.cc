// bitserial_dense_u64__avx2: the dense bit-plane kernel (DensePlaneArgs) on AVX2: a block's 8
// output channels are two vectors of 4 uint64 words; for each plane pair (p, q) the broadcast
// activation word AND the weight words is popcounted per byte by nibble lookup (vpshufb), the
// byte counts summed over up to 31 words (8 each: no overflow) and folded into int64 lanes by
// vpsadbw, then multiplied by act_coeffs[p] * weight_coeffs[q] (vpmuldq: both fit int32) into D.
// Built with -mavx2 -mpopcnt in its own translation unit.
#include <immintrin.h>

#include "bitserial_kernel.h"

namespace qcompile {
namespace bitserial {
namespace {

constexpr int64_t kFoldEvery = 31;  // words whose byte counts (<= 8 each) fit a byte

inline __m256i BytePopcount(__m256i v, __m256i lut, __m256i low) {
  const __m256i lo = _mm256_and_si256(v, low);
  const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
  return _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi));
}

// The 4 int64 lanes' low 32 bits (exact: |D| < 2^31) as 4 int32.
inline __m128i Low32(__m256i v) {
  return _mm256_castsi256_si128(
      _mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6)));
}

}  // namespace

void bitserial_dense_u64__avx2(const DensePlaneArgs& a, int64_t n, int64_t b0, int64_t b1) {
  const int64_t P = a.P, Q = a.Q, Kw = a.Kw;
  const uint64_t* x = a.x + n * P * Kw;
  const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2,
                                       1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i low = _mm256_set1_epi8(0x0f);
  const __m256i zero = _mm256_setzero_si256();
  const int64_t base = a.offset_term[n];
  for (int64_t b = b0; b < b1; ++b) {
    const uint64_t* wb = a.wd + b * Q * Kw * kDenseBlock;
    __m256i d0 = _mm256_set1_epi64x(base), d1 = d0;
    for (int64_t p = 0; p < P; ++p) {
      const uint64_t* xp = x + p * Kw;
      for (int64_t q = 0; q < Q; ++q) {
        const uint64_t* wq = wb + q * Kw * kDenseBlock;
        __m256i s0 = zero, s1 = zero;
        for (int64_t k0 = 0; k0 < Kw; k0 += kFoldEvery) {
          const int64_t k1 = k0 + kFoldEvery < Kw ? k0 + kFoldEvery : Kw;
          __m256i c0 = zero, c1 = zero;
          for (int64_t k = k0; k < k1; ++k) {
            const __m256i xv = _mm256_set1_epi64x(static_cast<long long>(xp[k]));
            const uint64_t* wk = wq + k * kDenseBlock;
            const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wk));
            const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wk + 4));
            c0 = _mm256_add_epi8(c0, BytePopcount(_mm256_and_si256(xv, w0), lut, low));
            c1 = _mm256_add_epi8(c1, BytePopcount(_mm256_and_si256(xv, w1), lut, low));
          }
          s0 = _mm256_add_epi64(s0, _mm256_sad_epu8(c0, zero));
          s1 = _mm256_add_epi64(s1, _mm256_sad_epu8(c1, zero));
        }
        const __m256i coef = _mm256_set1_epi64x(a.act_coeffs[p] * a.weight_coeffs[q]);
        d0 = _mm256_add_epi64(d0, _mm256_mul_epi32(s0, coef));
        d1 = _mm256_add_epi64(d1, _mm256_mul_epi32(s1, coef));
      }
    }
    int32_t* out = a.d + n * a.M + b * kDenseBlock;
    const int64_t left = a.M - b * kDenseBlock;
    if (left >= kDenseBlock) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out), Low32(d0));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 4), Low32(d1));
    } else {
      alignas(16) int32_t tmp[kDenseBlock];
      _mm_store_si128(reinterpret_cast<__m128i*>(tmp), Low32(d0));
      _mm_store_si128(reinterpret_cast<__m128i*>(tmp + 4), Low32(d1));
      for (int64_t j = 0; j < left; ++j) out[j] = tmp[j];
    }
  }
}

}  // namespace bitserial
}  // namespace qcompile
