// AVX2 inner loops over the split activation layout (kernel_args.h, SplitLayout), used by
// bitserial_conv2d_u64__avx2. Included only by translation units
// built with -mavx2; everything is internal (anonymous namespace) so no AVX2 code can be merged
// into another translation unit.
//
// Popcount by nibble lookup: activations and weights arrive split into nibbles (x & 0x0f..,
// (x >> 4) & 0x0f..), and popcount(x OP w) = sum over bytes of lut[xlo OP wlo] + lut[xhi OP whi]
// for OP = XOR (XnorConv) or AND (bit-plane pairs), since both commute with the nibble masks.
// Per 4 words: 2 OP, 2 vpshufb, 2 byte adds; byte counts grow by at most 8 per word, so they
// are folded into 64-bit sums with vpsadbw every 31 words (31 * 8 < 256).
//
// Tile: kLanes (4) neighbouring output pixels in the lanes of a ymm register x 8 output
// channels, as two passes of 4 channels (4 accumulators; with 8, GCC 12 spills half of them).
// The 4 pixels' words are one unaligned load (the split layout puts them side by side), each
// weight word one vpbroadcastq, and the sums come out per channel with the pixels in order.
// In L1 this loop reaches ~400 G binary MAC/s on Zen 3 (vs ~360 for xnor's Run), but an
// XnorConv kernel built on it (zero-padded input, border corrections) ran 1.4x slower than
// xnor_conv2d_u64__avx2 end to end, so XnorConv does not use it.
//
// Harley-Seal carry-save popcount does not pay here: with activations and weights pre-split
// into nibbles the lookup costs 6 vector ops per 4 words, about what the carry-save adders
// cost per input, and Harley-Seal would need 4 extra registers per accumulator.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "kernel_args.h"

namespace qcompile {
namespace packed {
namespace {

struct SplitSrc {
  // Step t of a window (t < steps: kernel rows, then columns, then words, in the order of the
  // blocked weights) reads activations at x_at + x_step[t] (low nibbles; high ones `hi` words
  // further) and weights at w + 16 * t (SplitLayout::x_step).
  const int64_t* x_step;
  int64_t steps;
  int64_t hi;  // Wq
};

static inline __m256i NibbleLut() {
  return _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,  //
                          0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
}

template <bool kAnd>
static inline __m256i Op(__m256i a, __m256i b) {
  return kAnd ? _mm256_and_si256(a, b) : _mm256_xor_si256(a, b);
}

static inline __m256i Bcast(const uint64_t* p) {
  return _mm256_set1_epi64x(static_cast<long long>(*p));
}

constexpr int64_t kFoldEvery = 31;

// sums[j][p] = sum over the window's steps of popcount(x OP w) for pixel ow0 + p (p < kLanes)
// and channel j of the block; `x_at` = the row's activations + ow0 (+ plane offset), `w` the
// block's weights (+ plane offset). Padded positions read zeros. The steps run in segments of
// at most 31 with the byte counters in registers, folded into `sums` after each segment.
template <bool kAnd>
static inline void SplitTile(const SplitSrc& src, const uint64_t* x_at, const uint64_t* w,
                             int64_t sums[kBlockM][kLanes]) {
  const __m256i lut = NibbleLut();
  const __m256i zero = _mm256_setzero_si256();
  __m256i* out = reinterpret_cast<__m256i*>(sums);
  for (int j = 0; j < kBlockM; ++j) _mm256_storeu_si256(out + j, zero);
  // Two passes of 4 channels: with 8 accumulators GCC spills half of them to the stack.
  for (int half = 0; half < 2; ++half) {
    const uint64_t* wh = w + 4 * half;
    __m256i* oh = out + 4 * half;
    for (int64_t t0 = 0; t0 < src.steps; t0 += kFoldEvery) {
      const int64_t t1 = t0 + kFoldEvery < src.steps ? t0 + kFoldEvery : src.steps;
      __m256i c0 = zero, c1 = zero, c2 = zero, c3 = zero;
      const uint64_t* wp = wh + t0 * 2 * kBlockM;
      for (int64_t t = t0; t < t1; ++t, wp += 2 * kBlockM) {
        const uint64_t* xp = x_at + src.x_step[t];
        const __m256i xl = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xp));
        const __m256i xh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xp + src.hi));
#define QC_STEP(j)                                                                    \
  c##j = _mm256_add_epi8(c##j, _mm256_shuffle_epi8(lut, Op<kAnd>(xl, Bcast(wp + j)))); \
  c##j = _mm256_add_epi8(c##j, _mm256_shuffle_epi8(lut, Op<kAnd>(xh, Bcast(wp + kBlockM + j))));
        QC_STEP(0) QC_STEP(1) QC_STEP(2) QC_STEP(3)
#undef QC_STEP
      }
#define QC_FOLD(j)                                                               \
  _mm256_storeu_si256(oh + j, _mm256_add_epi64(_mm256_loadu_si256(oh + j),       \
                                               _mm256_sad_epu8(c##j, zero)));
      QC_FOLD(0) QC_FOLD(1) QC_FOLD(2) QC_FOLD(3)
#undef QC_FOLD
    }
  }
}

// One output pixel x 8 channels (rows narrower than kLanes and the last OW % kLanes pixels):
// the activation word is broadcast and the 8 channels' weights fill two registers, the same
// work per pixel as SplitTile. sums[j] as there, for one pixel.
template <bool kAnd>
static inline void SplitPixel(const SplitSrc& src, const uint64_t* x_at, const uint64_t* w,
                              int64_t sums[kBlockM]) {
  const __m256i lut = NibbleLut();
  const __m256i zero = _mm256_setzero_si256();
  __m256i s0 = zero, s1 = zero;
  for (int64_t t0 = 0; t0 < src.steps; t0 += kFoldEvery) {
    const int64_t t1 = t0 + kFoldEvery < src.steps ? t0 + kFoldEvery : src.steps;
    __m256i c0 = zero, c1 = zero;
    const __m256i* wk = reinterpret_cast<const __m256i*>(w + t0 * 2 * kBlockM);
    for (int64_t t = t0; t < t1; ++t, wk += 4) {
      const uint64_t* xp = x_at + src.x_step[t];
      const __m256i xl = Bcast(xp), xh = Bcast(xp + src.hi);
      const __m256i wl0 = _mm256_loadu_si256(wk), wl1 = _mm256_loadu_si256(wk + 1);
      const __m256i wh0 = _mm256_loadu_si256(wk + 2), wh1 = _mm256_loadu_si256(wk + 3);
      c0 = _mm256_add_epi8(c0, _mm256_add_epi8(_mm256_shuffle_epi8(lut, Op<kAnd>(xl, wl0)),
                                               _mm256_shuffle_epi8(lut, Op<kAnd>(xh, wh0))));
      c1 = _mm256_add_epi8(c1, _mm256_add_epi8(_mm256_shuffle_epi8(lut, Op<kAnd>(xl, wl1)),
                                               _mm256_shuffle_epi8(lut, Op<kAnd>(xh, wh1))));
    }
    s0 = _mm256_add_epi64(s0, _mm256_sad_epu8(c0, zero));
    s1 = _mm256_add_epi64(s1, _mm256_sad_epu8(c1, zero));
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(sums), s0);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(sums + 4), s1);
}

}  // namespace
}  // namespace packed
}  // namespace qcompile
