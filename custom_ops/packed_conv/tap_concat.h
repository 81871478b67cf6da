// Kernel-row tap concatenation, shared by XnorConv and BitSerialConv: with few channels per group
// a 64-bit word is mostly padding, so the KW taps of a kernel row are packed into one bit vector
// (tap kw's Cg channels start at bit kw*Cg) and the conv runs as a KH x 1 conv on those vectors.
//
// XnorConv (XOR): X [N, H, W, G*Wg] -> X2 [N, H, OW, G*Wg2], column ow of X2 holding input
// columns iw = ow*sw - pl + kw*dw (kw < KW), zero bits where iw is outside the image;
// W [M, KH, KW, Wg] -> W2 [M, KH, 1, Wg2], Wg2 = ceil(KW*Cg/64), and the fast kernels run the
// KH x 1 convolution of X2 by W2 (stride 1, no horizontal pad) over Wg2 words per kernel row
// instead of KW*Wg. Inside the image this is the same sum of popcount(x ^ w). A tap outside the
// image adds 0 to D (SPEC), but in the concatenated vector its activation bits are 0, so
// x ^ w = w there and the kernel's D is off by
//   Cg*(taps outside) - 2*popcount(W of the taps outside)  per in-bounds kernel row,
// which depends only on the output column's edge pattern and the channel: the kernel adds the
// correction for edge columns from a small table (TapConcatEdges, ConvArgs::edge_corr).
//
// BitSerialConv (AND), stride 1 and dilation 1 only: AND with zero bits adds nothing, so D is
// unchanged and no correction is needed.
//
// Exact either way: only valid bits are moved, and the path is taken only when W's and X's pad
// bits are 0 (as SPEC requires; with a pad bit set the direct kernels would count it, so the
// result could differ).
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "../common/conv_attrs.h"
#include "kernel_args.h"

namespace qcompile {
namespace tapconcat {

// When kernels concatenate taps, from QCOMPILE_XNOR_TAP_CONCAT (read when a kernel is created):
// "0" never (A/B timing), "force" whenever it saves words (tests), else when it pays (auto).
enum { kTapConcatOff = 0, kTapConcatAuto = 1, kTapConcatForce = 2 };
int TapConcatMode();

// Words a kernel row takes, concatenated vs one tap at a time: in auto mode the path is taken
// when it at least halves them (16 channels, 3x3: 1 word vs 3). Saving less (32 channels: 2 vs
// 3) does not pay for the concatenated copy of X; force takes it whenever it saves a word.
// unit_stride: the kernels need sw = dw = 1 (the split bit-plane kernels).
inline bool TapConcatApplies(const packed::ConvGeometry& s, int mode, bool unit_stride) {
  if (mode == kTapConcatOff || s.KW < 2 || s.KW * s.Cg >= (int64_t{1} << 24)) return false;
  if (unit_stride && (s.sw != 1 || s.dw != 1)) return false;
  const int64_t words = Words(s.KW * s.Cg), direct = s.KW * s.Wg;
  return mode == kTapConcatForce ? words < direct : 2 * words <= direct;
}

// The XOR kernels' edge corrections (ConvArgs::edge_corr) for geometry s and the per-tap weight
// popcounts of ConcatWeights; sets a->edge_a / edge_b.
std::vector<int32_t> TapConcatEdges(const packed::ConvGeometry& s, const int32_t* tap_pop,
                                    packed::ConvArgs* a);

// The bits of word k of a Cg-channel group that hold channels (the rest are pad bits).
inline uint64_t ValidBits(int64_t Cg, int64_t k) {
  const int64_t b = Cg - k * kWordBits;
  return b >= kWordBits ? ~uint64_t{0} : (uint64_t{1} << b) - 1;
}

// dst (n words) |= word << off, across a word boundary when needed.
inline void OrBitsAt(uint64_t* dst, int64_t n, int64_t off, uint64_t word) {
  const int64_t i = off / kWordBits, sh = off % kWordBits;
  dst[i] |= word << sh;
  if (sh != 0 && i + 1 < n) dst[i + 1] |= word >> (kWordBits - sh);
}

// The geometry a constant weight is prepared for (kernel creation): what the attributes fix.
inline packed::ConvGeometry AttrGeometry(const ConvAttrs& a) {
  packed::ConvGeometry s{};
  s.G = a.group;
  s.Cg = a.in_channels / a.group;
  s.Wg = Words(s.Cg);
  s.KH = a.kernel_shape[0];
  s.KW = a.kernel_shape[1];
  s.sw = a.strides[1];
  s.dw = a.dilations[1];
  return s;
}

// The KH x 1 convolution over concatenated rows that replaces s; blocks = G (binary) or G*P.
inline packed::ConvGeometry ConcatGeometry(const packed::ConvGeometry& s, int64_t blocks) {
  packed::ConvGeometry c = s;
  c.W = s.OW;
  c.pl = 0;
  c.sw = c.dw = 1;
  c.KW = 1;
  c.Cg = s.KW * s.Cg;
  c.Wg = Words(c.Cg);
  c.XW = blocks * c.Wg;
  return c;
}

// W [M, KH, KW, Q*Wg] -> out [M, KH, Q*Wg2] (Q bit planes; 1 for binary). tap_pop, when given,
// gets the popcount of each tap's valid bits [M, KH, KW] (over all planes). False (outputs
// unusable) when W has a pad bit set.
inline bool ConcatWeights(const packed::ConvGeometry& s, int64_t Q, const uint64_t* w,
                          std::vector<uint64_t>* out, std::vector<int32_t>* tap_pop = nullptr) {
  const int64_t Wg2 = Words(s.KW * s.Cg);
  out->assign(static_cast<size_t>(s.M * s.KH * Q * Wg2), 0);
  if (tap_pop) tap_pop->assign(static_cast<size_t>(s.M * s.KH * s.KW), 0);
  uint64_t pad = 0;
  for (int64_t m = 0; m < s.M; ++m)
    for (int64_t kh = 0; kh < s.KH; ++kh)
      for (int64_t kw = 0; kw < s.KW; ++kw) {
        const int64_t tap = (m * s.KH + kh) * s.KW + kw;
        int32_t pop = 0;
        for (int64_t q = 0; q < Q; ++q) {
          uint64_t* dst = out->data() + ((m * s.KH + kh) * Q + q) * Wg2;
          for (int64_t k = 0; k < s.Wg; ++k) {
            const uint64_t word = w[tap * Q * s.Wg + q * s.Wg + k];
            const uint64_t valid = ValidBits(s.Cg, k);
            pad |= word & ~valid;
            pop += __builtin_popcountll(word & valid);
            OrBitsAt(dst, Wg2, kw * s.Cg + k * kWordBits, word & valid);
          }
        }
        if (tap_pop) (*tap_pop)[static_cast<size_t>(tap)] = pop;
      }
  return pad == 0;
}

// X [N, H, W, blocks*Wg] -> [N, H, OW, blocks*Wg2] into out (N*H*OW*blocks*Wg2 words), Wg2 =
// Words(KW*Cg); blocks = G (binary) or G*P (P bit planes per group). A tap outside the image
// stays 0. False (out unusable) when a word that some window reads has a pad bit set.
inline bool ConcatActivations(const packed::ConvGeometry& s, int64_t blocks, const uint64_t* x,
                              uint64_t* out) {
  const int64_t Wg2 = Words(s.KW * s.Cg), XW2 = blocks * Wg2;
  std::memset(out, 0, static_cast<size_t>(s.N * s.H * s.OW * XW2) * sizeof(uint64_t));
  uint64_t pad = 0;
  if (s.Wg == 1 && Wg2 == 1) {
    // The common small case (KW*Cg <= 64): one word in, one word out per block.
    const uint64_t valid = ValidBits(s.Cg, 0);
    for (int64_t nh = 0; nh < s.N * s.H; ++nh) {
      const uint64_t* row = x + nh * s.W * s.XW;
      uint64_t* dst = out + nh * s.OW * XW2;
      for (int64_t ow = 0; ow < s.OW; ++ow, dst += XW2) {
        const int64_t iw0 = ow * s.sw - s.pl;
        for (int64_t kw = 0; kw < s.KW; ++kw) {
          const int64_t iw = iw0 + kw * s.dw;
          if (iw < 0 || iw >= s.W) continue;
          const uint64_t* src = row + iw * s.XW;
          const int sh = static_cast<int>(kw * s.Cg);
          for (int64_t b = 0; b < blocks; ++b) {
            pad |= src[b];
            dst[b] |= (src[b] & valid) << sh;
          }
        }
      }
    }
    return (pad & ~valid) == 0;
  }
  for (int64_t nh = 0; nh < s.N * s.H; ++nh)
    for (int64_t ow = 0; ow < s.OW; ++ow) {
      uint64_t* dst = out + (nh * s.OW + ow) * XW2;
      for (int64_t kw = 0; kw < s.KW; ++kw) {
        const int64_t iw = ow * s.sw - s.pl + kw * s.dw;
        if (iw < 0 || iw >= s.W) continue;
        const uint64_t* src = x + (nh * s.W + iw) * s.XW;
        for (int64_t b = 0; b < blocks; ++b)
          for (int64_t k = 0; k < s.Wg; ++k) {
            const uint64_t word = src[b * s.Wg + k];
            const uint64_t valid = ValidBits(s.Cg, k);
            pad |= word & ~valid;
            OrBitsAt(dst + b * Wg2, Wg2, kw * s.Cg + k * kWordBits, word & valid);
          }
      }
    }
  return pad == 0;
}

}  // namespace tapconcat
}  // namespace qcompile
