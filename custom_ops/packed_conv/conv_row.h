// The row driver shared by the fast XnorConv kernels: it walks output pixels, computes the
// in-bounds kernel window once per output row (kh) and column (kw) instead of testing taps, and
// hands the window to a block kernel that sums popcount(x ^ w) for 8 output channels.
//
// Everything here is in an anonymous namespace on purpose: each ISA translation unit gets its
// own internal copy compiled for its ISA, and the linker can never merge an AVX-512 copy into
// code that runs on a CPU without AVX-512.
#pragma once

#include <cstdint>
#include <type_traits>

#include "kernel_args.h"

namespace qcompile {
namespace packed {
namespace {

struct TapRange {
  int64_t lo, hi;  // taps k in [lo, hi) read in-bounds positions start + k*d
};

// Taps k in [0, K) with 0 <= start + k*d < size, as 0 <= lo <= hi <= K. Both ends are clamped
// to [0, K]: a window wholly in the leading padding would otherwise give lo > K, and callers
// index per-kernel-row tables (the tap-concatenation edge corrections, K + 1 entries) with them.
inline TapRange ValidTaps(int64_t start, int64_t K, int64_t d, int64_t size) {
  int64_t room = size - start;  // need k*d < room
  int64_t lo, hi;
  if (d == 1) {  // the common case, without two integer divisions per pixel
    lo = start >= 0 ? 0 : -start;
    hi = room > 0 ? room : 0;
  } else {
    lo = start >= 0 ? 0 : (-start + d - 1) / d;
    hi = room > 0 ? (room + d - 1) / d : 0;
  }
  if (lo > K) lo = K;
  if (hi > K) hi = K;
  if (hi < lo) hi = lo;
  return {lo, hi};
}

// Window of one output pixel, as the block kernels see it.
struct Window {
  // The image's words of this group: tap (kh, kw) of a pixel whose window starts at word offset
  // `base` (possibly negative, in padding) reads word base + kh*row_step + kw*col_step + k,
  // times kXWords for a nibble-split source. Only in-bounds taps are ever formed.
  const uint64_t* x;
  int64_t row_step;    // words between taps kh and kh+1 (dh * W * XW)
  int64_t col_step;    // words between taps kw and kw+1 (dw * XW)
  TapRange rh, rw;
  int64_t KW, Wg;
};

// Output columns per pass: D values of a pass wait in a small int32 buffer, then the affine
// runs over contiguous columns of each channel (vectorisable, unlike per-pixel stores that
// stride across channel planes).
constexpr int64_t kColumnChunk = 64;

// out[base + j*plane + ow0 + p] for channel m0 + j: float(d[j][p]) * scale + bias into y, or
// d[j][p] itself into ConvArgs::d.
inline void StoreChunk(const ConvArgs& a, int64_t out_base, int64_t plane, int64_t m0,
                       int64_t nm, int64_t ow0, int64_t count, const int32_t (*d)[kColumnChunk]) {
  for (int64_t j = 0; j < nm; ++j) {
    const int64_t at = out_base + j * plane + ow0;
    if (a.d) {
      for (int64_t p = 0; p < count; ++p) a.d[at + p] = d[j][p];
      continue;
    }
    const float sc = a.scale[m0 + j], bi = a.bias[m0 + j];
    float* yj = a.y + at;
    for (int64_t p = 0; p < count; ++p) yj[p] = static_cast<float>(d[j][p]) * sc + bi;
  }
}

// Whether BlockDot has RunTileD (below): RunTile with the D conversion done in its registers.
template <class T, class = void>
struct HasRunTileD : std::false_type {};
template <class T>
struct HasRunTileD<T, std::void_t<decltype(&T::RunTileD)>> : std::true_type {};

// BlockDot provides
//   Run(const Window&, int64_t base, const uint64_t* wblock, int64_t sums[kBlockM]):
//     writes, for each of the 8 channels j, the sum of popcount(x ^ w) over the window's
//     in-bounds taps and Wg words;
//   kXWords, kWWords: 2 if it reads ConvArgs::xs / nibble-blocked weights, else 1;
//   kTile and RunTile(const Window&, int64_t base, int64_t pixel_step, const uint64_t* wblock,
//                     int64_t sums[kTile][kBlockM]):
//     the same for kTile neighbouring output pixels whose windows are all in-bounds along W
//     (pixel p reads at base + p * pixel_step), sharing each weight load across the pixels;
//   optionally RunTileD(win, base, pixel_step, wblock, taps_bits, int32_t* d, d_stride): the same
//     tile written as D = taps_bits - 2 * sums straight into d[j * d_stride + p] (the scalar
//     conversion of a tile's int64 sums into the channel-major D buffer cost as much as the tile).
template <class BlockDot>
inline void ConvRowBlocked(const ConvArgs& a, int64_t n, int64_t g, int64_t b0, int64_t b1,
                           int64_t oh) {
  constexpr int64_t kTile = BlockDot::kTile;
  const ConvGeometry& s = a.geo;
  const int64_t ih0 = oh * s.sh - s.pt;
  const TapRange rh = ValidTaps(ih0, s.KH, s.dh, s.H);
  // kXWords: words per activation word in the source the kernel reads (2 for a nibble split);
  // kWWords: the same for the blocked weights. Window offsets stay in activation words.
  constexpr int64_t kXWords = BlockDot::kXWords, kWWords = BlockDot::kWWords;
  const int64_t block_words = s.KH * s.KW * s.Wg * kBlockM * kWWords;
  const int64_t plane = s.OH * s.OW;
  const uint64_t* x_img = (kXWords == 2 ? a.xs : a.x) + kXWords * (n * s.H * s.W * s.XW + g * s.Wg);
  int64_t ow_a, ow_b;
  InteriorColumns(s, &ow_a, &ow_b);

  Window win;
  win.x = x_img;
  win.rh = rh;
  win.row_step = s.dh * s.W * s.XW;
  win.col_step = s.dw * s.XW;
  win.KW = s.KW;
  win.Wg = s.Wg;
  const int64_t pixel_step = s.sw * s.XW;
  for (int64_t b = b0; b < b1; ++b) {
    const uint64_t* wblock = a.wb + (g * s.blocks_per_group + b) * block_words;
    const int64_t m0 = g * s.Mg + b * kBlockM;
    int64_t nm = s.Mg - b * kBlockM;
    if (nm > kBlockM) nm = kBlockM;
    const int64_t out_base = ((n * s.M + m0) * s.OH + oh) * s.OW;
    int32_t d[kBlockM][kColumnChunk];
    for (int64_t ow0 = 0; ow0 < s.OW; ow0 += kColumnChunk) {
      const int64_t ow1 = ow0 + kColumnChunk < s.OW ? ow0 + kColumnChunk : s.OW;
      int64_t ow = ow0;
      while (ow < ow1) {
        const int64_t iw0 = ow * s.sw - s.pl;
        // Offsets, not pointers, until a tap is known to be in-bounds.
        const int64_t base = ih0 * s.W * s.XW + iw0 * s.XW;
        if constexpr (kTile > 1) {
          if (ow >= ow_a && ow + kTile <= ow_b && ow + kTile <= ow1) {
            win.rw = {0, s.KW};
            const int64_t cg_taps = s.Cg * (rh.hi - rh.lo) * s.KW;
            if constexpr (HasRunTileD<BlockDot>::value) {
              BlockDot::RunTileD(win, base, pixel_step, wblock, cg_taps, &d[0][ow - ow0], kColumnChunk);
            } else {
              int64_t sums[kTile][kBlockM];  // written by RunTile
              BlockDot::RunTile(win, base, pixel_step, wblock, sums);
              for (int64_t j = 0; j < kBlockM; ++j)
                for (int64_t p = 0; p < kTile; ++p)
                  d[j][ow - ow0 + p] = static_cast<int32_t>(cg_taps - 2 * sums[p][j]);
            }
            ow += kTile;
            continue;
          }
        }
        win.rw = ValidTaps(iw0, s.KW, s.dw, s.W);
        int64_t sums[kBlockM];  // written by Run
        BlockDot::Run(win, base, wblock, sums);
        const int64_t cg_taps = s.Cg * (rh.hi - rh.lo) * (win.rw.hi - win.rw.lo);
        for (int64_t j = 0; j < kBlockM; ++j)
          d[j][ow - ow0] = static_cast<int32_t>(cg_taps - 2 * sums[j]);
        ow += 1;
      }
      if (a.edge_corr) {
        // Tap concatenation: windows that crossed the left or right image edge.
        const int64_t stride = s.KH + 1;
        for (int64_t ow = ow0; ow < ow1; ++ow) {
          if (ow >= a.edge_a && ow < a.edge_b) {
            ow = a.edge_b - 1;  // skip the interior
            continue;
          }
          const int64_t e = ow < a.edge_a ? ow : a.edge_a + ow - a.edge_b;
          const int32_t* c = a.edge_corr + (e * s.M + m0) * stride;
          for (int64_t j = 0; j < nm; ++j)
            d[j][ow - ow0] += c[j * stride + rh.hi] - c[j * stride + rh.lo];
        }
      }
      StoreChunk(a, out_base, plane, m0, nm, ow0, ow1 - ow0, d);
    }
  }
}

// The popcount-ceiling microbenchmark of a row kernel (qcompile_popcount_ceiling): `iters`
// passes of BlockDot's inner loop (RunTile when kUseTile, else Run) on a 3x3 window of 4 words
// per pixel (256 channels) of an image kW pixels wide, all L1-resident; returns the binary
// multiply-adds done. The timing is the variant table's (xnor_variants.cc), outside ISA code.
template <class BlockDot, bool kUseTile, int64_t kW>
inline int64_t PopcountCeilingLoop(int64_t iters) {
  constexpr int64_t kWg = 4;
  constexpr int64_t kXWords = BlockDot::kXWords, kWWords = BlockDot::kWWords;
  static uint64_t x[kXWords * 3 * kW * kWg];
  static uint64_t w[9 * kWg * kWWords * kBlockM];
  const uint64_t x_mask = kXWords == 2 ? kLowNibbles : ~uint64_t{0};
  const uint64_t w_mask = kWWords == 2 ? kLowNibbles : ~uint64_t{0};
  uint64_t seed = 0x9e3779b97f4a7c15ull;
  auto next = [&seed] { return seed = seed * 6364136223846793005ull + 1442695040888963407ull; };
  for (uint64_t& v : x) v = next() & x_mask;
  for (uint64_t& v : w) v = next() & w_mask;
  Window win{x, kW * kWg, kWg, {0, 3}, {0, 3}, 3, kWg};
  int64_t check = 0;
  for (int64_t i = 0; i < iters; ++i) {
    if constexpr (kUseTile) {
      int64_t sums[BlockDot::kTile][kBlockM];
      BlockDot::RunTile(win, (i & 1) * kWg, kWg, w, sums);
      check += sums[i & 3][i & 7];
    } else {
      int64_t sums[kBlockM];
      BlockDot::Run(win, (i & 1) * kWg, w, sums);
      check += sums[i & 7];
    }
  }
  static volatile int64_t sink;  // keeps the loop from being optimised away
  sink = sink + check;
  return iters * (kUseTile ? BlockDot::kTile : 1) * kBlockM * 9 * kWg * 64;
}

}  // namespace
}  // namespace packed
}  // namespace qcompile
