// xnor_conv2d_u64__avx512vpopcnt: 8 output channels in one zmm register; vpopcntq counts each
// 64-bit lane directly. Built with -mavx512f -mavx512vpopcntdq in its own translation unit and
// only called when the CPU reports both (see xnor_variants.cc).
#include <immintrin.h>

#include "../packed_conv/conv_row.h"
#include "xnor_kernel.h"

namespace qcompile {
namespace xnor {
namespace {

struct Avx512Dot {
  static constexpr int64_t kXWords = 1, kWWords = 1;
  static constexpr int64_t kTile = 4;

  // kTile pixels x 8 channels; one weight load serves 4 pixels.
  static inline void RunTile(const Window& win, int64_t base, int64_t pixel_step,
                             const uint64_t* wblock, int64_t sums[kTile][kBlockM]) {
    __m512i acc[kTile];
    for (int p = 0; p < kTile; ++p) acc[p] = _mm512_setzero_si512();
    for (int64_t kh = win.rh.lo; kh < win.rh.hi; ++kh) {
      const uint64_t* wrow = wblock + kh * win.KW * win.Wg * kBlockM;
      for (int64_t kw = 0; kw < win.KW; ++kw) {
        const uint64_t* xp = win.x + (base + kh * win.row_step + kw * win.col_step);
        const uint64_t* wp = wrow + kw * win.Wg * kBlockM;
        for (int64_t k = 0; k < win.Wg; ++k) {
          const __m512i wv = _mm512_loadu_si512(wp + k * kBlockM);
          for (int p = 0; p < kTile; ++p) {
            const __m512i xv = _mm512_set1_epi64(static_cast<long long>(xp[p * pixel_step + k]));
            acc[p] = _mm512_add_epi64(acc[p], _mm512_popcnt_epi64(_mm512_xor_si512(xv, wv)));
          }
        }
      }
    }
    for (int p = 0; p < kTile; ++p) _mm512_storeu_si512(sums[p], acc[p]);
  }

  static inline void Run(const Window& win, int64_t base, const uint64_t* wblock,
                         int64_t sums[kBlockM]) {
    __m512i acc = _mm512_setzero_si512();
    for (int64_t kh = win.rh.lo; kh < win.rh.hi; ++kh) {
      const uint64_t* wrow = wblock + kh * win.KW * win.Wg * kBlockM;
      for (int64_t kw = win.rw.lo; kw < win.rw.hi; ++kw) {
        const uint64_t* xp = win.x + (base + kh * win.row_step + kw * win.col_step);
        const uint64_t* wp = wrow + kw * win.Wg * kBlockM;
        for (int64_t k = 0; k < win.Wg; ++k) {
          const __m512i xv = _mm512_set1_epi64(static_cast<long long>(xp[k]));
          const __m512i wv = _mm512_loadu_si512(wp + k * kBlockM);
          acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_xor_si512(xv, wv)));
        }
      }
    }
    _mm512_storeu_si512(sums, acc);
  }
};

}  // namespace

void xnor_conv2d_u64__avx512vpopcnt(const ConvArgs& a, int64_t n, int64_t g, int64_t b0,
                                    int64_t b1, int64_t oh) {
  ConvRowBlocked<Avx512Dot>(a, n, g, b0, b1, oh);
}

// The ceiling: Avx512Dot::RunTile on a 3x3 window of 4 words per pixel (256 channels), all
// L1-resident.
int64_t xnor_ceiling__avx512vpopcnt(int64_t iters) {
  constexpr int64_t kWg = 4, kW = 8;
  static uint64_t x[3 * kW * kWg];
  static uint64_t w[9 * kWg * kBlockM];
  uint64_t seed = 0x9e3779b97f4a7c15ull;
  for (uint64_t& v : x) v = seed = seed * 6364136223846793005ull + 1442695040888963407ull;
  for (uint64_t& v : w) v = seed = seed * 6364136223846793005ull + 1442695040888963407ull;
  Window win{x, kW * kWg, kWg, {0, 3}, {0, 3}, 3, kWg};
  int64_t check = 0;
  for (int64_t i = 0; i < iters; ++i) {
    int64_t sums[Avx512Dot::kTile][kBlockM];
    Avx512Dot::RunTile(win, (i & 1) * kWg, kWg, w, sums);
    check += sums[i & 3][i & 7];
  }
  static volatile int64_t sink;  // keeps the loop from being optimised away
  sink = sink + check;
  return iters * Avx512Dot::kTile * kBlockM * 9 * kWg * 64;
}

}  // namespace xnor
}  // namespace qcompile
