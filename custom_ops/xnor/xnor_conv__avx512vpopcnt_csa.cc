// xnor_conv2d_u64__avx512vpopcnt_csa: the avx512vpopcnt kernel with a Harley-Seal carry-save
// tree. Eight xor'ed vectors (8 channels x 64 bits each) go through seven carry-save adders
// (vpternlogq 0x96 = 3-way xor, 0xe8 = majority) into running ones/twos/fours, and only the
// eights are counted with vpopcntq: one popcount per 8 words instead of 8. At the end
// D-popcount = 8*sum(popcnt(eights)) + 4*popcnt(fours) + 2*popcnt(twos) + popcnt(ones), plus the
// direct popcounts of the window's last (steps mod 8) words. Built with -mavx512f
// -mavx512vpopcntdq in its own translation unit; tested on CPUs without AVX-512 through the
// scalar intrinsics of testing/avx512_emulation/.
#include <immintrin.h>

#include "../packed_conv/conv_row.h"
#include "xnor_kernel.h"

namespace qcompile {
namespace xnor {
namespace {

// Walks the words of a window in order: tap rows [rh.lo, rh.hi), columns [rw.lo, rw.hi), words.
struct WordCursor {
  const Window& win;
  int64_t kh, kw, k;
  explicit WordCursor(const Window& w) : win(w), kh(w.rh.lo), kw(w.rw.lo), k(0) {}
  bool done() const { return kh >= win.rh.hi || win.rw.lo >= win.rw.hi; }
  int64_t x_off() const { return kh * win.row_step + kw * win.col_step + k; }
  int64_t w_off() const { return ((kh * win.KW + kw) * win.Wg + k) * kBlockM; }
  void next() {
    if (++k < win.Wg) return;
    k = 0;
    if (++kw < win.rw.hi) return;
    kw = win.rw.lo;
    ++kh;
  }
};

inline void Csa(__m512i& hi, __m512i& lo, __m512i a, __m512i b, __m512i c) {
  hi = _mm512_ternarylogic_epi64(a, b, c, 0xe8);  // majority: the carry
  lo = _mm512_ternarylogic_epi64(a, b, c, 0x96);  // a ^ b ^ c: the sum bit
}

struct Avx512CsaDot {
  static constexpr int64_t kXWords = 1, kWWords = 1;
  static constexpr int64_t kTile = 4;

  // Pixels p < P, pixel p's window at base + p * pixel_step; sums[p][j] as in conv_row.h.
  template <int P>
  static inline void Count(const Window& win, int64_t base, int64_t pixel_step,
                           const uint64_t* wblock, int64_t (*sums)[kBlockM]) {
    const __m512i zero = _mm512_setzero_si512();
    __m512i ones[P], twos[P], fours[P], eights[P], direct[P];
    for (int p = 0; p < P; ++p) ones[p] = twos[p] = fours[p] = eights[p] = direct[p] = zero;
    WordCursor cur(win);
    int64_t xo[8], wo[8];
    while (!cur.done()) {
      int got = 0;
      for (; got < 8 && !cur.done(); ++got, cur.next()) {
        xo[got] = base + cur.x_off();
        wo[got] = cur.w_off();
      }
      if (got < 8) {  // the window's last words: counted directly
        for (int i = 0; i < got; ++i) {
          const __m512i wv = _mm512_loadu_si512(wblock + wo[i]);
          for (int p = 0; p < P; ++p) {
            const __m512i xv =
                _mm512_set1_epi64(static_cast<long long>(win.x[xo[i] + p * pixel_step]));
            direct[p] = _mm512_add_epi64(direct[p], _mm512_popcnt_epi64(_mm512_xor_si512(xv, wv)));
          }
        }
        break;
      }
      __m512i wv[8];
      for (int i = 0; i < 8; ++i) wv[i] = _mm512_loadu_si512(wblock + wo[i]);
      for (int p = 0; p < P; ++p) {
        __m512i v[8];
        for (int i = 0; i < 8; ++i)
          v[i] = _mm512_xor_si512(
              _mm512_set1_epi64(static_cast<long long>(win.x[xo[i] + p * pixel_step])), wv[i]);
        __m512i twos_a, twos_b, fours_a, fours_b, eight;
        Csa(twos_a, ones[p], ones[p], v[0], v[1]);
        Csa(twos_b, ones[p], ones[p], v[2], v[3]);
        Csa(fours_a, twos[p], twos[p], twos_a, twos_b);
        Csa(twos_a, ones[p], ones[p], v[4], v[5]);
        Csa(twos_b, ones[p], ones[p], v[6], v[7]);
        Csa(fours_b, twos[p], twos[p], twos_a, twos_b);
        Csa(eight, fours[p], fours[p], fours_a, fours_b);
        eights[p] = _mm512_add_epi64(eights[p], _mm512_popcnt_epi64(eight));
      }
    }
    for (int p = 0; p < P; ++p) {
      int64_t e[kBlockM], f[kBlockM], t[kBlockM], o[kBlockM], d[kBlockM];
      _mm512_storeu_si512(e, eights[p]);
      _mm512_storeu_si512(f, _mm512_popcnt_epi64(fours[p]));
      _mm512_storeu_si512(t, _mm512_popcnt_epi64(twos[p]));
      _mm512_storeu_si512(o, _mm512_popcnt_epi64(ones[p]));
      _mm512_storeu_si512(d, direct[p]);
      for (int64_t j = 0; j < kBlockM; ++j)
        sums[p][j] = 8 * e[j] + 4 * f[j] + 2 * t[j] + o[j] + d[j];
    }
  }

  static inline void RunTile(const Window& win, int64_t base, int64_t pixel_step,
                             const uint64_t* wblock, int64_t sums[kTile][kBlockM]) {
    Count<kTile>(win, base, pixel_step, wblock, sums);
  }

  static inline void Run(const Window& win, int64_t base, const uint64_t* wblock,
                         int64_t sums[kBlockM]) {
    int64_t one[1][kBlockM];
    Count<1>(win, base, 0, wblock, one);
    for (int64_t j = 0; j < kBlockM; ++j) sums[j] = one[0][j];
  }
};

}  // namespace

void xnor_conv2d_u64__avx512vpopcnt_csa(const ConvArgs& a, int64_t n, int64_t g, int64_t b0,
                                        int64_t b1, int64_t oh) {
  ConvRowBlocked<Avx512CsaDot>(a, n, g, b0, b1, oh);
}

// The ceiling: Avx512CsaDot::RunTile on a 3x3 window of 4 words per pixel (256 channels), all
// L1-resident (the same shape as xnor_ceiling__avx512vpopcnt).
int64_t xnor_ceiling__avx512vpopcnt_csa(int64_t iters) {
  constexpr int64_t kWg = 4, kW = 8;
  static uint64_t x[3 * kW * kWg];
  static uint64_t w[9 * kWg * kBlockM];
  uint64_t seed = 0x9e3779b97f4a7c15ull;
  for (uint64_t& v : x) v = seed = seed * 6364136223846793005ull + 1442695040888963407ull;
  for (uint64_t& v : w) v = seed = seed * 6364136223846793005ull + 1442695040888963407ull;
  Window win{x, kW * kWg, kWg, {0, 3}, {0, 3}, 3, kWg};
  int64_t check = 0;
  for (int64_t i = 0; i < iters; ++i) {
    int64_t sums[Avx512CsaDot::kTile][kBlockM];
    Avx512CsaDot::RunTile(win, (i & 1) * kWg, kWg, w, sums);
    check += sums[i & 3][i & 7];
  }
  static volatile int64_t sink;  // keeps the loop from being optimised away
  sink = sink + check;
  return iters * Avx512CsaDot::kTile * kBlockM * 9 * kWg * 64;
}

}  // namespace xnor
}  // namespace qcompile
