// bitserial_conv2d_u64__avx2: BitSerialConv / BitSerialGemm on the split-layout AVX2 tiles
// (xnor/avx2_split_tile.h) with AND instead of XOR. For each plane pair (p, q) a pass of
// SplitTile gives S_pq = sum of popcount(A_p & W_q) for 4 pixels x 8 channels, and
//   D = sum_p act_coeffs[p] * (sum_q weight_coeffs[q] * S_pq + weight_offset * popcount(A_p))
// (bitserial_row.h). The weights of a block are plane-major ([Q][KH*KW*Wg][2][8], see
// RunBitSerial) so that each plane is one run of window steps. Zero padding needs no correction: padded activations are all-zero planes
// and AND with them adds nothing. Built with -mavx2 -mpopcnt in its own translation unit.
#include "../xnor/avx2_split_tile.h"
#include "bitserial_kernel.h"

namespace qcompile {
namespace bitserial {
namespace {

using xnor::kBlockM;
using xnor::kLanes;

// sum over taps and words of popcount(A_p) for `lanes` pixels starting at x_at (plane p's
// first word): the split layout holds both nibbles, whose popcounts add up to the word's.
inline void PlaneCounts(const xnor::SplitSrc& src, const uint64_t* x_at, int64_t lanes,
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

}  // namespace

void bitserial_conv2d_u64__avx2(const BitSerialArgs& a, int64_t n, int64_t m0, int64_t m1,
                                int64_t oh) {
  const xnor::ConvGeometry& s = a.geo;
  const xnor::SplitLayout& l = *a.split;
  const int64_t P = a.P, Q = a.Q, Wg = s.Wg;
  const int64_t g = m0 / s.Mg;
  const int64_t b0 = (m0 - g * s.Mg) / kBlockM;
  const int64_t b1 = (m1 - g * s.Mg + kBlockM - 1) / kBlockM;
  const xnor::SplitSrc src{l.x_step, l.steps, l.Wq};
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
      int64_t d[kBlockM][kLanes] = {};
      for (int64_t p = 0; p < P; ++p) {
        const uint64_t* xp = x_row + p * Wg * l.word_step + ow;
        for (int64_t q = 0; q < Q; ++q) {
          const uint64_t* wq = wblock + q * l.steps * 2 * kBlockM;
          const int64_t c = a.act_coeffs[p] * a.weight_coeffs[q];
          if (lanes == kLanes) {
            int64_t sums[kBlockM][kLanes];
            xnor::SplitTile<true>(src, xp, wq, sums);
            for (int64_t j = 0; j < kBlockM; ++j)
              for (int64_t i = 0; i < kLanes; ++i) d[j][i] += c * sums[j][i];
          } else {
            int64_t sums[kBlockM];
            xnor::SplitPixel<true>(src, xp, wq, sums);
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
