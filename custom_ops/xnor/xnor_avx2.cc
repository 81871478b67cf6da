// xnor_conv2d_u64__avx2: the split-layout AVX2 kernel (avx2_split_tile.h): 4 neighbouring
// output pixels in the lanes x 8 output channels per tile, popcount by nibble lookup.
// Activations arrive zero-padded and split (ConvArgs::xs, SplitLayout), so the tile has no
// window logic: every pixel sums popcount(x ^ w) over all KH*KW taps, padded ones included,
// and pixels whose window touches padding subtract what the padding added (ConvArgs::wpop).
// Interior tiles go out as 4 contiguous floats (or int32 D) per channel. Built with -mavx2 in
// its own translation unit.
#include "avx2_split_tile.h"

namespace qcompile {
namespace xnor {
namespace {

struct TapRange {
  int64_t lo, hi;
};

// Taps k in [0, K) with 0 <= start + k*d < size.
inline TapRange ValidTaps(int64_t start, int64_t K, int64_t d, int64_t size) {
  int64_t lo = start >= 0 ? 0 : (-start + d - 1) / d;
  const int64_t room = size - start;
  int64_t hi = room > 0 ? (room + d - 1) / d : 0;
  if (hi > K) hi = K;
  if (hi < lo) hi = lo;
  return {lo, hi};
}

// Output of one pixel ow for the block's channels m0 + j (j < nm) from its full-window sums:
// D = Cg * (valid taps) - 2 * (sum - what padded taps added).
inline void StorePixel(const ConvArgs& a, TapRange rh, int64_t ow, int64_t m0, int64_t nm,
                       int64_t out_base, int64_t plane, const int64_t* sums, int64_t sum_stride) {
  const ConvGeometry& s = a.geo;
  const TapRange rw = ValidTaps(ow * s.sw - s.pl, s.KW, s.dw, s.W);
  const int64_t taps = s.KH * s.KW;
  const bool full = rh.lo == 0 && rh.hi == s.KH && rw.lo == 0 && rw.hi == s.KW;
  const int64_t cg_taps = s.Cg * (rh.hi - rh.lo) * (rw.hi - rw.lo);
  for (int64_t j = 0; j < nm; ++j) {
    int64_t sum = sums[j * sum_stride];
    if (!full) {
      const int32_t* wp = a.wpop + (m0 + j) * taps;
      for (int64_t kh = 0; kh < s.KH; ++kh)
        for (int64_t kw = 0; kw < s.KW; ++kw)
          if (kh < rh.lo || kh >= rh.hi || kw < rw.lo || kw >= rw.hi) sum -= wp[kh * s.KW + kw];
    }
    const int32_t d = static_cast<int32_t>(cg_taps - 2 * sum);
    const int64_t at = out_base + j * plane + ow;
    if (a.d) {
      a.d[at] = d;
    } else {
      a.y[at] = static_cast<float>(d) * a.scale[m0 + j] + a.bias[m0 + j];
    }
  }
}

// What D = Cg*KH*KW - 2*sum misses for pixel ow0 + p of a window that touches padding:
// adj = 2 * (what the padded taps added to sum) - Cg * (padded taps).
inline void BorderAdjust(const ConvArgs& a, TapRange rh, int64_t ow0, int64_t m0, int64_t nm,
                         int64_t adj[kBlockM][kLanes]) {
  const ConvGeometry& s = a.geo;
  const int64_t taps = s.KH * s.KW;
  for (int64_t p = 0; p < kLanes; ++p) {
    const TapRange rw = ValidTaps((ow0 + p) * s.sw - s.pl, s.KW, s.dw, s.W);
    const int64_t padded = taps - (rh.hi - rh.lo) * (rw.hi - rw.lo);
    for (int64_t j = 0; j < kBlockM; ++j) {
      int64_t pad_sum = 0;
      if (padded && j < nm) {
        const int32_t* wp = a.wpop + (m0 + j) * taps;
        for (int64_t kh = 0; kh < s.KH; ++kh)
          for (int64_t kw = 0; kw < s.KW; ++kw)
            if (kh < rh.lo || kh >= rh.hi || kw < rw.lo || kw >= rw.hi)
              pad_sum += wp[kh * s.KW + kw];
      }
      adj[j][p] = 2 * pad_sum - s.Cg * padded;
    }
  }
}

// A tile: D = Cg*KH*KW - 2*sum (+ adj at the borders) for 4 pixels, stored side by side.
inline void StoreTile(const ConvArgs& a, int64_t ow0, int64_t m0, int64_t nm, int64_t out_base,
                      int64_t plane, const int64_t sums[kBlockM][kLanes],
                      const int64_t (*adj)[kLanes]) {
  const ConvGeometry& s = a.geo;
  const __m256i cg_taps = _mm256_set1_epi64x(s.Cg * s.KH * s.KW);
  const __m256i low_dwords = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
  for (int64_t j = 0; j < nm; ++j) {
    const __m256i sum = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sums[j]));
    __m256i d64 = _mm256_sub_epi64(cg_taps, _mm256_add_epi64(sum, sum));
    if (adj)
      d64 = _mm256_add_epi64(d64, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(adj[j])));
    const __m128i d =
        _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(d64, low_dwords));
    const int64_t at = out_base + j * plane + ow0;
    if (a.d) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(a.d + at), d);
    } else {
      // Same float steps as the reference: exact int -> float, one multiply, one add.
      const __m128 y = _mm_add_ps(_mm_mul_ps(_mm_cvtepi32_ps(d), _mm_set1_ps(a.scale[m0 + j])),
                                  _mm_set1_ps(a.bias[m0 + j]));
      _mm_storeu_ps(a.y + at, y);
    }
  }
}

}  // namespace

void xnor_conv2d_u64__avx2(const ConvArgs& a, int64_t n, int64_t g, int64_t b0, int64_t b1,
                           int64_t oh) {
  const ConvGeometry& s = a.geo;
  const SplitLayout& l = *a.split;
  const SplitSrc src{l.x_step, l.steps, l.Wq};
  const uint64_t* x_row =
      a.xs + (n * l.Hp + oh * s.sh) * s.sw * l.phase_step + g * s.Wg * l.word_step;
  const TapRange rh = ValidTaps(oh * s.sh - s.pt, s.KH, s.dh, s.H);
  const bool row_inside = rh.lo == 0 && rh.hi == s.KH;
  // Output columns whose window is wholly inside the image along W.
  int64_t ow_a = (s.pl + s.sw - 1) / s.sw;
  const int64_t last = s.W - 1 - (s.KW - 1) * s.dw + s.pl;
  int64_t ow_b = last < 0 ? 0 : last / s.sw + 1;
  if (ow_b > s.OW) ow_b = s.OW;
  const int64_t block_words = l.steps * 2 * kBlockM;
  const int64_t plane = s.OH * s.OW;
  for (int64_t b = b0; b < b1; ++b) {
    const uint64_t* wblock = a.wb + (g * s.blocks_per_group + b) * block_words;
    const int64_t m0 = g * s.Mg + b * kBlockM;
    const int64_t nm = s.Mg - b * kBlockM < kBlockM ? s.Mg - b * kBlockM : kBlockM;
    const int64_t out_base = ((n * s.M + m0) * s.OH + oh) * s.OW;
    int64_t ow = 0;
    for (; ow + kLanes <= s.OW; ow += kLanes) {
      int64_t sums[kBlockM][kLanes];
      SplitTile<false>(src, x_row + ow, wblock, sums);
      if (row_inside && ow >= ow_a && ow + kLanes <= ow_b) {
        StoreTile(a, ow, m0, nm, out_base, plane, sums, nullptr);
      } else {
        int64_t adj[kBlockM][kLanes];
        BorderAdjust(a, rh, ow, m0, nm, adj);
        StoreTile(a, ow, m0, nm, out_base, plane, sums, adj);
      }
    }
    for (; ow < s.OW; ++ow) {
      int64_t sums[kBlockM];
      SplitPixel<false>(src, x_row + ow, wblock, sums);
      StorePixel(a, rh, ow, m0, nm, out_base, plane, sums, 1);
    }
  }
}

// The ceiling: SplitTile on a 3x3 window of 4 words per pixel (256 channels), all L1-resident.
int64_t xnor_ceiling__avx2(int64_t iters) {
  constexpr int64_t kWg = 4, kTaps = 9, kWq = 8;
  alignas(32) static uint64_t x[3 * 3 * kWg * 2 * kWq];  // rows x (sw=1) x words x halves x q
  alignas(32) static uint64_t w[kTaps * kWg * 2 * kBlockM];
  static int64_t x_step[kTaps * kWg];
  for (int64_t t = 0; t < kTaps * kWg; ++t)  // 3x3 taps, then words; rows of 3 phases' words
    x_step[t] = (t / kWg / 3) * kWg * 2 * kWq + (t / kWg) % 3 + (t % kWg) * 2 * kWq;
  uint64_t seed = 0x9e3779b97f4a7c15ull;
  for (uint64_t& v : x) v = (seed = seed * 6364136223846793005ull + 1442695040888963407ull) & kLowNibbles;
  for (uint64_t& v : w) v = (seed = seed * 6364136223846793005ull + 1442695040888963407ull) & kLowNibbles;
  const SplitSrc src{x_step, kTaps * kWg, kWq};
  int64_t check = 0;
  for (int64_t i = 0; i < iters; ++i) {
    int64_t sums[kBlockM][kLanes];
    SplitTile<false>(src, x + (i & 1), w, sums);
    check += sums[i & 7][i & 3];
  }
  static volatile int64_t sink;
  sink = check;
  return iters * kLanes * kBlockM * kTaps * kWg * 64;
}

}  // namespace xnor
}  // namespace qcompile
