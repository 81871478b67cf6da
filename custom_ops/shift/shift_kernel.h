// ShiftConv / ShiftGemm / Pow2Quant kernels (custom_ops/SPEC.md, "SHIFT"): activation codes, weight
// decoding and the shift-and-add integer convolution. Portable C++ with no ORT types and no ISA
// dispatch; the row loop (AddShiftedRow) is written so that GCC -O3 vectorises it over output
// pixels.
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

}  // namespace shift
}  // namespace qcompile
