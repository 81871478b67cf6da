// bitserial_dense_u64__avx512vpopcnt: the dense bit-plane kernel (DensePlaneArgs) with one
// vector of 8 output channels per block: for each plane pair (p, q) the broadcast activation word
// AND 8 weight words, vpopcntq, summed in int64 lanes over the Kw words, then multiplied by
// act_coeffs[p] * weight_coeffs[q] (vpmuldq: both fit int32) into D. Built with
// -mavx512f -mavx512vpopcntdq in its own translation unit; called only when the CPU has both.
#include <immintrin.h>

#include "bitserial_kernel.h"

namespace qcompile {
namespace bitserial {

void bitserial_dense_u64__avx512vpopcnt(const DensePlaneArgs& a, int64_t n, int64_t b0,
                                        int64_t b1) {
  const int64_t P = a.P, Q = a.Q, Kw = a.Kw;
  const uint64_t* x = a.x + n * P * Kw;
  const int64_t base = a.offset_term[n];
  for (int64_t b = b0; b < b1; ++b) {
    const uint64_t* wb = a.wd + b * Q * Kw * kDenseBlock;
    __m512i d = _mm512_set1_epi64(base);
    for (int64_t p = 0; p < P; ++p) {
      const uint64_t* xp = x + p * Kw;
      for (int64_t q = 0; q < Q; ++q) {
        const uint64_t* wq = wb + q * Kw * kDenseBlock;
        __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
        int64_t k = 0;
        for (; k + 2 <= Kw; k += 2) {  // two chains, so the adds overlap the popcount latency
          const __m512i w0 = _mm512_loadu_si512(wq + k * kDenseBlock);
          const __m512i w1 = _mm512_loadu_si512(wq + (k + 1) * kDenseBlock);
          s0 = _mm512_add_epi64(s0, _mm512_popcnt_epi64(_mm512_and_si512(
                                        _mm512_set1_epi64(static_cast<long long>(xp[k])), w0)));
          s1 = _mm512_add_epi64(s1, _mm512_popcnt_epi64(_mm512_and_si512(
                                        _mm512_set1_epi64(static_cast<long long>(xp[k + 1])), w1)));
        }
        if (k < Kw) {
          const __m512i w0 = _mm512_loadu_si512(wq + k * kDenseBlock);
          s0 = _mm512_add_epi64(s0, _mm512_popcnt_epi64(_mm512_and_si512(
                                        _mm512_set1_epi64(static_cast<long long>(xp[k])), w0)));
        }
        const __m512i coef = _mm512_set1_epi64(a.act_coeffs[p] * a.weight_coeffs[q]);
        // maskz: GCC 12 warns of the plain form's undefined pass-through operand
        d = _mm512_add_epi64(d, _mm512_maskz_mul_epi32(0xff, _mm512_add_epi64(s0, s1), coef));
      }
    }
    const int64_t left = a.M - b * kDenseBlock;
    const __mmask8 keep = left >= kDenseBlock ? 0xff : static_cast<__mmask8>((1u << left) - 1);
    _mm512_mask_cvtepi64_storeu_epi32(a.d + n * a.M + b * kDenseBlock, keep, d);
  }
}

}  // namespace bitserial
}  // namespace qcompile
