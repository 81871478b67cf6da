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

  // One tap of one word for the tile's pixels (xp: the tap's first pixel).
  static inline void Tap(const uint64_t* xp, int64_t pixel_step, const uint64_t* wp,
                         __m512i acc[kTile]) {
    const __m512i wv = _mm512_loadu_si512(wp);
    for (int p = 0; p < kTile; ++p) {
      const __m512i xv = _mm512_set1_epi64(static_cast<long long>(xp[p * pixel_step]));
      acc[p] = _mm512_add_epi64(acc[p], _mm512_popcnt_epi64(_mm512_xor_si512(xv, wv)));
    }
  }

  // kTile pixels x 8 channels; one weight load serves 4 pixels.
  static inline void Accumulate(const Window& win, int64_t base, int64_t pixel_step,
                                const uint64_t* wblock, __m512i acc[kTile]) {
    for (int p = 0; p < kTile; ++p) acc[p] = _mm512_setzero_si512();
    if (win.Wg == 1 && win.KW == 3) {  // 64 channels, 3 wide (ResNet's first stage): no inner loops
      for (int64_t kh = win.rh.lo; kh < win.rh.hi; ++kh) {
        const uint64_t* xp = win.x + (base + kh * win.row_step);
        const uint64_t* wp = wblock + kh * 3 * kBlockM;
        Tap(xp, pixel_step, wp, acc);
        Tap(xp + win.col_step, pixel_step, wp + kBlockM, acc);
        Tap(xp + 2 * win.col_step, pixel_step, wp + 2 * kBlockM, acc);
      }
      return;
    }
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
  }

  static inline void RunTile(const Window& win, int64_t base, int64_t pixel_step,
                             const uint64_t* wblock, int64_t sums[kTile][kBlockM]) {
    __m512i acc[kTile];
    Accumulate(win, base, pixel_step, wblock, acc);
    for (int p = 0; p < kTile; ++p) _mm512_storeu_si512(sums[p], acc[p]);
  }

  // D = taps_bits - 2 * sums per pixel (8 int64 lanes -> 8 int32), then the 4 pixels x 8
  // channels transposed in registers to channel rows of 4 pixels.
  static inline void RunTileD(const Window& win, int64_t base, int64_t pixel_step,
                              const uint64_t* wblock, int64_t taps_bits, int32_t* d,
                              int64_t d_stride) {
    static_assert(kTile == 4 && kBlockM == 8, "the transpose below is 4 x 8");
    __m512i acc[kTile];
    Accumulate(win, base, pixel_step, wblock, acc);
    const __m512i bits = _mm512_set1_epi64(taps_bits);
    __m256i v[kTile];
    for (int p = 0; p < kTile; ++p)
      v[p] = _mm512_maskz_cvtepi64_epi32(0xff, _mm512_sub_epi64(bits, _mm512_add_epi64(acc[p], acc[p])));
    const __m256i t0 = _mm256_unpacklo_epi32(v[0], v[1]), t1 = _mm256_unpackhi_epi32(v[0], v[1]);
    const __m256i t2 = _mm256_unpacklo_epi32(v[2], v[3]), t3 = _mm256_unpackhi_epi32(v[2], v[3]);
    // channel j (low half) and j + 4 (high half) of u[j]: pixels 0..3
    const __m256i u[4] = {_mm256_unpacklo_epi64(t0, t2), _mm256_unpackhi_epi64(t0, t2),
                          _mm256_unpacklo_epi64(t1, t3), _mm256_unpackhi_epi64(t1, t3)};
    for (int j = 0; j < 4; ++j) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(d + j * d_stride), _mm256_castsi256_si128(u[j]));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(d + (j + 4) * d_stride),
                       _mm256_extracti128_si256(u[j], 1));
    }
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
