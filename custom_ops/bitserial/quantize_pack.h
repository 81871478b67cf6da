// QuantizePack's row kernels (custom_ops/SPEC.md, "QuantizePack"): codes of a row of floats, and
// their plane bits ORed into plane words. One variant per ISA (quantize_pack__sse2.cc,
// quantize_pack__portable.cc) in the table of bitserial_variants.cc; every variant rounds
// exactly as common/quantize.h.
#pragma once

#include <cstdint>

#include "../common/quantize.h"

namespace qcompile {
namespace bitserial {

struct QuantParams {
  float sc, zp, qmin, qmax;
  int32_t zpi, vmin, vmax;  // |zp| <= 65536, 1..16 planes: all fit int32
};

// code[i] = clamp(round(x[i] / sc + zp), qmin, qmax) - zp for n values, exactly Quant's float32
// steps (QuantCode); true if some value has no code (NaN, or outside what the planes hold),
// whose code is then meaningless.
using QuantRowFn = bool (*)(const float* x, int64_t n, const QuantParams& qp, int32_t* code);
// plane[w] |= bit p of code[w], shifted to `shift`, for w < n.
using OrPlaneBitsFn = void (*)(const int32_t* code, int64_t n, int p, int shift,
                               uint64_t* plane);

struct QuantPackKernel {
  QuantRowFn quant_row[4];  // by Rounding: kRound, kCeil, kFloor, kRoundToZero
  OrPlaneBitsFn or_plane_bits;
};

// One row (n, h) of QuantizePack: x [N, C, H, W] (or [N, K] as H = W = 1) into y's packed
// planes [N, H, W, G*P*Wg].
struct QuantPackRows {
  const float* x;
  uint64_t* y;
  int64_t C, H, W, G, P;
  QuantParams qp;
  const QuantPackKernel* kernel;
};
// Packs row r (rounding: 0 ROUND, 1 CEIL, 2 FLOOR, 3 ROUND_TO_ZERO); true, with the first value
// that has no code in *bad, when some value has none (the row's output is then unusable).
bool QuantizePackRow(const QuantPackRows& a, int rounding, int64_t r, float* bad);

extern const QuantPackKernel quantize_pack__portable;
extern const QuantPackKernel quantize_pack__sse2;

// The scalar QuantRow (every variant's tail, and the first-bad-value report).
template <Rounding R>
inline bool QuantRowScalar(const float* x, int64_t n, const QuantParams& qp, int32_t* code) {
  const int32_t zpi = qp.zpi, vmin = qp.vmin, vmax = qp.vmax;
  int bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float q = QuantCode<R>(x[i], qp.sc, qp.zp, qp.qmin, qp.qmax);
    const bool nan = !(q == q);
    const int32_t c = static_cast<int32_t>(nan ? 0.0f : q) - zpi;
    bad |= static_cast<int>(nan) | static_cast<int>(c < vmin) | static_cast<int>(c > vmax);
    code[i] = c;
  }
  return bad != 0;
}

inline void OrPlaneBitsScalar(const int32_t* code, int64_t n, int p, int shift,
                              uint64_t* plane) {
  for (int64_t w = 0; w < n; ++w) plane[w] |= static_cast<uint64_t>((code[w] >> p) & 1) << shift;
}

}  // namespace bitserial
}  // namespace qcompile
