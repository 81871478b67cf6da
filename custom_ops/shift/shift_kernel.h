// ShiftConv / ShiftGemm / Pow2Quant kernels (custom_ops/SPEC.md, "SHIFT"): activation codes, weight
// decoding and the shift-and-add integer convolution (portable: the row loop AddShiftedRow is
// written so that GCC -O3 vectorises it over output pixels), plus the data preparation of the
// int8 multiply-add path (packed weights, offset activation rows) whose dot-product tile is
// DotTileAvx2 (shift_avx2.cc, built with -mavx2). No ORT types; shift_ops.cc picks the path.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "../common/quantize.h"

namespace qcompile {
namespace shift {

constexpr int kMaxExponent = 6;  // |w_int| = 2^e, 0 <= e <= 6
constexpr int kMaxLevels = 7;    // pow2 activations: at most 7 thresholds, |a| <= 2^6

// The activation quantizer: float x -> int8 code a (SPEC, "Activation codes").
struct ActQuant {
  bool pow2 = true;
  int levels = 0;  // pow2: number of thresholds, ascending
  float thresholds[kMaxLevels] = {};
  float scale = 1.0f, zero_point = 0.0f, qmin = 0.0f, qmax = 0.0f;  // uniform
  Rounding rounding = Rounding::kRound;
  int32_t max_abs = 0;  // the largest |a| the quantizer can give
  int32_t min_code = 0, max_code = 0;  // the range of a
};

// Pow2Quant's code: j = #{k : |x| >= t[k]}; 0 if j = 0, else +-2^(j-1), negative iff !(x >= 0).
// NaN reaches no threshold, so it gives 0; -0.0 gives 0.
inline int32_t Pow2Code(float x, const float* t, int levels) {
  const float ax = std::fabs(x);
  int j = 0;
  for (int k = 0; k < levels; ++k) j += ax >= t[k] ? 1 : 0;
  const int32_t mag = j ? (int32_t{1} << (j - 1)) : 0;
  return x >= 0.0f ? mag : -mag;
}

// a[i] = code of x[i] for i in [0, count). Returns the index of the first NaN in uniform mode
// (it has no integer code; the op reports it), else -1.
int64_t QuantizeActs(const ActQuant& q, const float* x, int64_t count, int8_t* a);

// One non-zero weight of an output channel: w_int = (sign ? -1 : 1) << shift. `offset` locates
// its activation relative to the channel group's first activation (conv: c*H*W, plus the tap
// through kh, kw; dense: k).
struct Term {
  int64_t offset;
  int32_t kh, kw;
  int32_t shift;
  int32_t sign;  // 0 or -1: ((v << shift) ^ sign) - sign is +-(v << shift)
};

// Non-zero weights of every output channel, channel m's in terms[begin[m], begin[m+1]).
struct DecodedWeights {
  std::vector<Term> terms;
  std::vector<int64_t> begin;
};

// W uint8 [M, ceil(K/2)] nibble codes, K = Cg*KH*KW in row order (c, kh, kw), for an input of
// H x W pixels per channel. Codes 0 and 8 are zero weights and dropped. (Dense: Cg = K,
// KH = KW = 1, H = W = 1.)
DecodedWeights DecodeWeights(const uint8_t* w, int64_t M, int64_t Cg, int64_t KH, int64_t KW,
                             int64_t H, int64_t W);

struct ConvShape {
  int64_t N, C, H, W, G, Cg, M, Mg, KH, KW, sh, sw, pt, pl, dh, dw, OH, OW;
};

// Output columns [lo, hi) whose input column for kernel column kw lies in the image; iw is the
// input column of output column lo.
struct ColRange {
  int64_t lo, hi, iw;
};
std::vector<ColRange> ColRanges(const ConvShape& s);

// Y[n, m, oh, :] for m in [m0, m1): D exact in int32 by shifts and adds over the non-zero
// weights, then Y = float(D) * scale[m] + bias[m]. `acc` holds OW int32.
void ShiftConvRow(const ConvShape& s, const int8_t* a, const DecodedWeights& w,
                  const ColRange* cols, const float* scale, const float* bias, int64_t n,
                  int64_t m0, int64_t m1, int64_t oh, int32_t* acc, float* y);

// Y[n, m] for m in [m0, m1) of a dense layer: a [N, K], Y [N, M].
void ShiftGemmRow(const int8_t* a, int64_t K, int64_t M, const DecodedWeights& w,
                  const float* scale, const float* bias, int64_t n, int64_t m0, int64_t m1,
                  float* y);

// ---------------------------------------------------------------- int8 multiply-add path
// D[p, m] = sum_k u[p, k] * w[m, k] - off * sum_k w[m, k], with u = a + off (uint8; see
// shift_avx2.cc for why the path multiplies and why the offset). Channels go in blocks of
// kDotBlockM, the reduction in quads of 4 k (K4 = K rounded up to 4; the extra k have w = 0).

constexpr int64_t kDotBlockM = 16;

// The activation offset: the smallest that makes every u = a + off >= 0 (and a padded tap's
// u = off a valid byte).
inline int32_t ActOffset(const ActQuant& q) { return q.min_code < 0 ? -q.min_code : 0; }
inline int32_t MaxU(const ActQuant& q) { return q.max_code + ActOffset(q); }

// True when every u fits a byte and every int16 pair sum of vpmaddubsw, 2 * max u * max |w_int|
// (max |w_int| = 2^6, whatever the weight data), stays <= 32767, so the instruction never
// saturates. (Int8 codes give at most 255 * 64 * 2 = 32640: this holds for every valid
// attribute set, and is checked anyway before the path is chosen.)
inline bool ShiftInt8Fits(const ActQuant& q) {
  const int64_t max_u = MaxU(q);
  return max_u <= 255 && 2 * max_u * (int64_t{1} << kMaxExponent) <= 32767;
}

// W decoded to int8 w_int and laid out for DotTileAvx2: per group g and channel block b, a run
// of K4/4 quads of [16 channels][4 k] (channels past Mg are zero). The k order is (kh, kw, c)
// (the order of an im2col row, ConvIm2colRows), not W's (c, kh, kw).
struct PackedWeights {
  int64_t G = 0, Mg = 0, Cg = 0, KH = 0, KW = 0, K4 = 0, blocks = 0;
  int32_t off = 0;    // the activation offset the correction was computed for
  int32_t max_w = 0;  // max |w_int| over the data
  std::vector<int8_t> w;       // [G][blocks][K4/4][16][4]
  std::vector<uint32_t> corr;  // [G][blocks*16]: off * sum_k w_int, modulo 2^32
  const int8_t* Block(int64_t g, int64_t b) const {
    return w.data() + (g * blocks + b) * K4 * kDotBlockM;
  }
};
PackedWeights PackWeights(const uint8_t* w, int64_t M, int64_t G, int64_t Cg, int64_t KH,
                          int64_t KW, int32_t off);

// How many quads the int8 tile may sum in int16 lanes before widening to int32: each quad adds
// one vpmaddubsw pair sum, |pair| <= 2 * max_u * max_w, and the int16 sum must stay <= 32767.
inline int64_t Int16Depth(int32_t max_u, int32_t max_w) {
  const int64_t pair = 2 * int64_t{max_u > 0 ? max_u : 1} * (max_w > 0 ? max_w : 1);
  return 32767 / pair;
}

// u[n, h, w, c] = a[n, c, h, w] + off (NHWC, so an im2col row copies Cg contiguous bytes per tap).
void ToOffsetNHWC(const int8_t* a, int64_t C, int64_t H, int64_t W, int64_t n, int64_t h,
                  int32_t off, uint8_t* u);

// The im2col rows of output pixels [p0, p0 + rows) (p = oh*OW + ow) of image n, group g: row r at
// dst + r*K4, k = (kh*KW + kw)*Cg + c, off (a = 0) for padded taps and for k >= K.
void ConvIm2colRows(const ConvShape& s, const uint8_t* u, int64_t K4, int64_t n, int64_t g,
                    int64_t p0, int64_t rows, int32_t off, uint8_t* dst);

// out[r*16 + j] = sum_{k < K4} u[r*lda + k] * w[channel j, k] for r < rows, with w one channel
// block of PackedWeights; `depth` = Int16Depth(max u, max |w|) >= 1. AVX2 (shift_avx2.cc).
void DotTileAvx2(const uint8_t* u, int64_t lda, int64_t rows, const int8_t* w, int64_t K4,
                 int64_t depth, int32_t* out);

// y[r*stride_r + j*stride_m] = float(D) * scale[j] + bias[j] for r < rows, j < channels, with
// D = acc[r*16 + j] - corr[j] (modulo 2^32: the exact D, which fits int32).
void WriteTile(const int32_t* acc, const uint32_t* corr, int64_t rows, int64_t channels,
               const float* scale, const float* bias, float* y, int64_t stride_r,
               int64_t stride_m);

}  // namespace shift
}  // namespace qcompile
