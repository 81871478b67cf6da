// bitserial_conv2d_u64__avx2: BitSerialConv / BitSerialGemm on the split-layout AVX2 tiles
// (xnor/avx2_split_tile.h) with AND instead of XOR. For each plane pair (p, q) a pass of
// SplitTile gives S_pq = sum of popcount(A_p & W_q) for 4 pixels x 8 channels, and
//   D = sum_p act_coeffs[p] * (sum_q weight_coeffs[q] * S_pq + weight_offset * popcount(A_p))
// (bitserial_row.h). The weights of a block are plane-major ([Q][KH*KW*Wg][2][8], see
// RunBitSerial) so that each plane is one run of window steps. Zero padding needs no correction: padded activations are all-zero planes
// and AND with them adds nothing. Built with -mavx2 -mpopcnt in its own translation unit.
#include "../packed_conv/avx2_split_tile.h"
#include "bitserial_kernel.h"

namespace qcompile {
namespace bitserial {
namespace {

using packed::kBlockM;
using packed::kLanes;

// sum over taps and words of popcount(A_p) for `lanes` pixels starting at x_at (plane p's
// first word): the split layout holds both nibbles, whose popcounts add up to the word's.
inline void PlaneCounts(const packed::SplitSrc& src, const uint64_t* x_at, int64_t lanes,
                        int64_t* out) {
  for (int64_t l = 0; l < lanes; ++l) {
    int64_t c = 0;
    for (int64_t t = 0; t < src.steps; ++t) {
      const uint64_t* xp = x_at + src.x_step[t] + l;
      c += __builtin_popcountll(xp[0]) + __builtin_popcountll(xp[src.hi]);
    }
    out[l] = c;
  }
}

// D of 4 output pixels (the lanes) x 8 channels over every plane pair, in int64 lanes: for
// each half (4 channels) the byte counters of one (p, q) pass are folded with vpsadbw and
// multiplied by act_coeffs[p] * weight_coeffs[q] straight into the D registers (vpmuldq: both
// factors fit int32, as the op's range check bounds |coeff products| * terms by 2^31), so no
// per-pair sums go through memory. `x_at` is plane 0 of the 4 pixels, planes `x_plane` words
// apart; `w` the block's plane 0, planes `w_plane` words apart.
inline void BitSerialTile(const BitSerialArgs& a, const packed::SplitSrc& src, const uint64_t* x_at,
                          int64_t x_plane, const uint64_t* w, int64_t w_plane, __m256i d[kBlockM]) {
  const __m256i lut = packed::NibbleLut();
  const __m256i zero = _mm256_setzero_si256();
  constexpr int64_t kFold = packed::kFoldEvery;
  for (int half = 0; half < 2; ++half) {
    __m256i d0 = zero, d1 = zero, d2 = zero, d3 = zero;
    for (int64_t p = 0; p < a.P; ++p) {
      const uint64_t* xp = x_at + p * x_plane;
      for (int64_t q = 0; q < a.Q; ++q) {
        const __m256i coef = _mm256_set1_epi64x(a.act_coeffs[p] * a.weight_coeffs[q]);
        const uint64_t* wh = w + q * w_plane + 4 * half;
        for (int64_t t0 = 0; t0 < src.steps; t0 += kFold) {
          const int64_t t1 = t0 + kFold < src.steps ? t0 + kFold : src.steps;
          __m256i c0 = zero, c1 = zero, c2 = zero, c3 = zero;
          const uint64_t* wp = wh + t0 * 2 * kBlockM;
          for (int64_t t = t0; t < t1; ++t, wp += 2 * kBlockM) {
            const uint64_t* xt = xp + src.x_step[t];
            const __m256i xl = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xt));
            const __m256i xh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xt + src.hi));
#define QC_STEP(j)                                                                             \
  c##j = _mm256_add_epi8(c##j, _mm256_shuffle_epi8(lut, _mm256_and_si256(xl, packed::Bcast(wp + j)))); \
  c##j = _mm256_add_epi8(                                                                      \
      c##j, _mm256_shuffle_epi8(lut, _mm256_and_si256(xh, packed::Bcast(wp + kBlockM + j))));
            QC_STEP(0) QC_STEP(1) QC_STEP(2) QC_STEP(3)
#undef QC_STEP
          }
          d0 = _mm256_add_epi64(d0, _mm256_mul_epi32(_mm256_sad_epu8(c0, zero), coef));
          d1 = _mm256_add_epi64(d1, _mm256_mul_epi32(_mm256_sad_epu8(c1, zero), coef));
          d2 = _mm256_add_epi64(d2, _mm256_mul_epi32(_mm256_sad_epu8(c2, zero), coef));
          d3 = _mm256_add_epi64(d3, _mm256_mul_epi32(_mm256_sad_epu8(c3, zero), coef));
        }
      }
      if (a.weight_offset != 0) {  // + act_coeffs[p] * weight_offset * popcount(A_p)
        const __m256i coef = _mm256_set1_epi64x(a.act_coeffs[p] * a.weight_offset);
        for (int64_t t0 = 0; t0 < src.steps; t0 += kFold) {
          const int64_t t1 = t0 + kFold < src.steps ? t0 + kFold : src.steps;
          __m256i c = zero;
          for (int64_t t = t0; t < t1; ++t) {
            const uint64_t* xt = xp + src.x_step[t];
            const __m256i xl = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xt));
            const __m256i xh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xt + src.hi));
            c = _mm256_add_epi8(c, _mm256_add_epi8(_mm256_shuffle_epi8(lut, xl),
                                                   _mm256_shuffle_epi8(lut, xh)));
          }
          const __m256i v = _mm256_mul_epi32(_mm256_sad_epu8(c, zero), coef);
          d0 = _mm256_add_epi64(d0, v);
          d1 = _mm256_add_epi64(d1, v);
          d2 = _mm256_add_epi64(d2, v);
          d3 = _mm256_add_epi64(d3, v);
        }
      }
    }
    d[4 * half + 0] = d0;
    d[4 * half + 1] = d1;
    d[4 * half + 2] = d2;
    d[4 * half + 3] = d3;
  }
}

}  // namespace

void bitserial_conv2d_u64__avx2(const BitSerialArgs& a, int64_t n, int64_t m0, int64_t m1,
                                int64_t oh) {
  const packed::ConvGeometry& s = a.geo;
  const packed::SplitLayout& l = *a.split;
  const int64_t P = a.P, Q = a.Q, Wg = s.Wg;
  const int64_t g = m0 / s.Mg;
  const int64_t b0 = (m0 - g * s.Mg) / kBlockM;
  const int64_t b1 = (m1 - g * s.Mg + kBlockM - 1) / kBlockM;
  const packed::SplitSrc src{l.x_step, l.steps, l.Wq};
  const uint64_t* x_row =
      a.xs + (n * l.Hp + oh * s.sh) * s.sw * l.phase_step + g * P * Wg * l.word_step;
  const int64_t block_words = Q * l.steps * 2 * kBlockM;
  const int64_t plane = s.OH * s.OW;
  for (int64_t b = b0; b < b1; ++b) {
    const uint64_t* wblock = a.wb + (g * s.blocks_per_group + b) * block_words;
    const int64_t mb = g * s.Mg + b * kBlockM;
    const int64_t nm = m1 - mb < kBlockM ? m1 - mb : kBlockM;
    const int64_t out_base = ((n * s.M + mb) * s.OH + oh) * s.OW;
    for (int64_t ow = 0; ow < s.OW;) {
      const int64_t lanes = ow + kLanes <= s.OW ? kLanes : 1;
      if (lanes == kLanes) {
        __m256i dv[kBlockM];
        BitSerialTile(a, src, x_row + ow, Wg * l.word_step, wblock, l.steps * 2 * kBlockM, dv);
        // y = float(int32(D)) * scale + bias, lane by lane as the scalar code (no FMA).
        const __m256i low32 = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
        for (int64_t j = 0; j < nm; ++j) {
          const __m128i di = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(dv[j], low32));
          const __m128 f = _mm_cvtepi32_ps(di);
          const __m128 r = _mm_add_ps(_mm_mul_ps(f, _mm_set1_ps(a.scale[mb + j])),
                                      _mm_set1_ps(a.bias[mb + j]));
          _mm_storeu_ps(a.y + out_base + j * plane + ow, r);
        }
        ow += kLanes;
        continue;
      }
      int64_t d[kBlockM][kLanes] = {};
      for (int64_t p = 0; p < P; ++p) {
        const uint64_t* xp = x_row + p * Wg * l.word_step + ow;
        for (int64_t q = 0; q < Q; ++q) {
          const uint64_t* wq = wblock + q * l.steps * 2 * kBlockM;
          const int64_t c = a.act_coeffs[p] * a.weight_coeffs[q];
          if (lanes == kLanes) {
            int64_t sums[kBlockM][kLanes];
            packed::SplitTile<true>(src, xp, wq, sums);
            for (int64_t j = 0; j < kBlockM; ++j)
              for (int64_t i = 0; i < kLanes; ++i) d[j][i] += c * sums[j][i];
          } else {
            int64_t sums[kBlockM];
            packed::SplitPixel<true>(src, xp, wq, sums);
            for (int64_t j = 0; j < kBlockM; ++j) d[j][0] += c * sums[j];
          }
        }
        if (a.weight_offset != 0) {
          int64_t cnt[kLanes];
          PlaneCounts(src, xp, lanes, cnt);
          for (int64_t j = 0; j < kBlockM; ++j)
            for (int64_t i = 0; i < lanes; ++i) d[j][i] += a.act_coeffs[p] * a.weight_offset * cnt[i];
        }
      }
      for (int64_t j = 0; j < nm; ++j) {
        const float sc = a.scale[mb + j], bi = a.bias[mb + j];
        float* yj = a.y + out_base + j * plane + ow;
        for (int64_t i = 0; i < lanes; ++i)
          yj[i] = static_cast<float>(static_cast<int32_t>(d[j][i])) * sc + bi;
      }
      ow += lanes;
    }
  }
}

}  // namespace bitserial
}  // namespace qcompile
