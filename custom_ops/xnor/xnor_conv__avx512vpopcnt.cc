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

// The ceiling: Avx512Dot::RunTile.
int64_t xnor_ceiling__avx512vpopcnt(int64_t iters) {
  return PopcountCeilingLoop<Avx512Dot, true, 8>(iters);
}

}  // namespace xnor
}  // namespace qcompile
