// lut_conv2d_i8__avx2: the table-lookup convolution (lut_kernel.h) with AVX2. Per step (one
// tap and nibble of a group) two vectors hold the index bytes of 64 virtual output positions;
// each of the kLutM channels' 16-entry tables is loaded into both 128-bit lanes and vpshufb
// looks up 32 positions at once, vpaddb accumulating in int8. Register budget: 8 accumulators,
// 2 index vectors, 1 table (of 16 ymm). The int8 sums are widened to int16 (in L1) before they
// can overflow (127 / max|entry| steps) and the int16 sums to int32 before those can
// (32767 / the int8 bound), so D is exact for any K. Built with -mavx2 in its own unit.
#include <immintrin.h>

#include "lut_tile.h"

namespace qcompile {
namespace lut {
namespace {

constexpr int64_t kSuperPx = 1024;     // positions whose int32 sums wait in L1 (16 KiB)
constexpr int64_t kTableBudget = 32768;  // bytes of tables per chunk of steps

struct TableBytes {
  int8_t b[kTableBytes];
};
#if QCOMPILE_LUT_TABLE_BYTES == 16
#define LUT_LOAD_TABLE "vbroadcasti128"
#else
#define LUT_LOAD_TABLE "vmovdqu"
#endif

// h[0..63] += acc0 (positions 0..31) and acc1 (32..63), sign-extended; or h = when first.
inline void WidenBytes(__m256i acc0, __m256i acc1, int16_t* h, bool first) {
  const __m256i parts[4] = {_mm256_cvtepi8_epi16(_mm256_castsi256_si128(acc0)),
                            _mm256_cvtepi8_epi16(_mm256_extracti128_si256(acc0, 1)),
                            _mm256_cvtepi8_epi16(_mm256_castsi256_si128(acc1)),
                            _mm256_cvtepi8_epi16(_mm256_extracti128_si256(acc1, 1))};
  __m256i* dst = reinterpret_cast<__m256i*>(h);
  for (int k = 0; k < 4; ++k)
    _mm256_store_si256(dst + k, first ? parts[k] : _mm256_add_epi16(_mm256_load_si256(dst + k),
                                                                   parts[k]));
}

// acc0 += lookup of i0 in the 16-entry table t (broadcast to both lanes), acc1 likewise for
// i1. Written in asm because GCC 12 otherwise hoists all four tables, shuffles into the table
// registers and spills an accumulator (measured: half the throughput).
inline void Step(const int8_t* t, __m256i i0, __m256i i1, __m256i& acc0, __m256i& acc1) {
  __m256i table, tmp;
  __asm__(
      LUT_LOAD_TABLE " %[t], %[table]\n\t"
      "vpshufb %[i0], %[table], %[tmp]\n\t"
      "vpaddb %[tmp], %[a0], %[a0]\n\t"
      "vpshufb %[i1], %[table], %[tmp]\n\t"
      "vpaddb %[tmp], %[a1], %[a1]"
      : [a0] "+x"(acc0), [a1] "+x"(acc1), [table] "=&x"(table), [tmp] "=&x"(tmp)
      : [t] "m"(*reinterpret_cast<const TableBytes*>(t)), [i0] "x"(i0), [i1] "x"(i1));
}

inline void WidenShorts(const int16_t* h, int32_t* d, bool first) {
  for (int k = 0; k < kLutPx; k += 8) {
    const __m256i v = _mm256_cvtepi16_epi32(_mm_load_si128(reinterpret_cast<const __m128i*>(h + k)));
    __m256i* dst = reinterpret_cast<__m256i*>(d + k);
    _mm256_store_si256(dst, first ? v : _mm256_add_epi32(_mm256_load_si256(dst), v));
  }
}

}  // namespace

void lut_conv2d_i8__avx2(const LutConvArgs& a, int64_t n, int64_t g, int64_t b, int64_t v0,
                         int64_t v1) {
  const LutPlan& p = a.plan;
  const uint8_t* xg = a.xb + (n * p.G + g) * p.C4 * p.sh * p.sw * p.pitch;
  const int8_t* tb = a.tables + (g * p.blocks + b) * p.steps * kLutM * kTableBytes;
  const int64_t m0 = g * p.Mg + b * kLutM;
  const int64_t nm = p.Mg - b * kLutM < kLutM ? p.Mg - b * kLutM : kLutM;
  const int64_t entry = p.max_entry > 0 ? p.max_entry : 1;
  const int64_t run8 = 127 / entry;             // int8 steps before widening to int16
  const int64_t run16 = 32767 / (run8 * entry);  // int8 runs before widening to int32
  // Steps per chunk: the chunk's tables stay in L1 while every pass of a super-chunk reads
  // them (without chunks, a layer with many channels streams its tables from L2 per pass).
  int64_t runs = kTableBudget / (run8 * kLutM * kTableBytes);
  if (runs < 1) runs = 1;
  if (runs > run16) runs = run16;
  const int64_t chunk = runs * run8;
  const int64_t* step_off = a.step_off;
  alignas(32) int32_t d[kLutM][kSuperPx];
  for (int64_t vs = v0; vs < v1; vs += kSuperPx) {
    const int64_t ve = v1 - vs < kSuperPx ? v1 : vs + kSuperPx;
    for (int64_t c0 = 0; c0 < p.steps; c0 += chunk) {
      const int64_t c1 = c0 + chunk < p.steps ? c0 + chunk : p.steps;
      for (int64_t v = vs; v < ve; v += kLutPx) {
        alignas(32) int16_t h[kLutM][kLutPx];
        bool h_first = true;
        for (int64_t s0 = c0; s0 < c1; s0 += run8) {
          const int64_t s1 = s0 + run8 < c1 ? s0 + run8 : c1;
          // Eight named accumulators: GCC keeps an array of them in memory.
          static_assert(kLutM == 4, "the loop below is written out for 4 channels");
          const __m256i zero = _mm256_setzero_si256();
          __m256i a00 = zero, a01 = zero, a10 = zero, a11 = zero;
          __m256i a20 = zero, a21 = zero, a30 = zero, a31 = zero;
          const int8_t* t = tb + s0 * kLutM * kTableBytes;
          for (int64_t s = s0; s < s1; ++s, t += kLutM * kTableBytes) {
            const uint8_t* xp = xg + step_off[s] + v;
            const __m256i i0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xp));
            const __m256i i1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xp + 32));
            Step(t, i0, i1, a00, a01);
            Step(t + kTableBytes, i0, i1, a10, a11);
            Step(t + 2 * kTableBytes, i0, i1, a20, a21);
            Step(t + 3 * kTableBytes, i0, i1, a30, a31);
          }
          WidenBytes(a00, a01, h[0], h_first);
          WidenBytes(a10, a11, h[1], h_first);
          WidenBytes(a20, a21, h[2], h_first);
          WidenBytes(a30, a31, h[3], h_first);
          h_first = false;
        }
        for (int64_t j = 0; j < kLutM; ++j) WidenShorts(h[j], d[j] + (v - vs), c0 == 0);
      }
    }
    StoreTile(a, n, m0, nm, vs, ve - vs, d[0], kSuperPx);
  }
}

// The ceiling: the inner loop's vpshufb + vpaddb on tables and indices held in registers (the
// empty asm makes the compiler treat the indices as new each iteration, so no lookup is hoisted).
int64_t lut_ceiling_lookups__avx2(int64_t iters) {
  __m256i t[kLutM], acc[kLutM][2];
  for (int64_t j = 0; j < kLutM; ++j) {
    t[j] = _mm256_set1_epi8(static_cast<char>(j + 1));
    acc[j][0] = acc[j][1] = _mm256_setzero_si256();
  }
  __m256i i0 = _mm256_set1_epi8(3), i1 = _mm256_set1_epi8(5);
  for (int64_t it = 0; it < iters; ++it) {
    __asm__ volatile("" : "+x"(i0), "+x"(i1));
    for (int64_t j = 0; j < kLutM; ++j) {
      acc[j][0] = _mm256_add_epi8(acc[j][0], _mm256_shuffle_epi8(t[j], i0));
      acc[j][1] = _mm256_add_epi8(acc[j][1], _mm256_shuffle_epi8(t[j], i1));
    }
  }
  __m256i sum = _mm256_setzero_si256();
  for (int64_t j = 0; j < kLutM; ++j) sum = _mm256_xor_si256(sum, _mm256_xor_si256(acc[j][0], acc[j][1]));
  static volatile int sink;  // keeps the loop from being optimised away
  sink = sink + _mm256_extract_epi32(sum, 0);
  return iters * kLutM * 2 * 32;
}

int64_t lut_ceiling__avx2(int64_t iters) { return 4 * lut_ceiling_lookups__avx2(iters); }

}  // namespace lut
}  // namespace qcompile
