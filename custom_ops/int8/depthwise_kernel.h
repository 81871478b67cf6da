// The depthwise sum kernel of qcompile::DepthwiseConvInteger, one channel at a time; included by
// depthwise_conv.cc (the portable build) and depthwise_conv__avx2.cc (built with -mavx2), which
// compile the same loops for their ISA.
#pragma once

#include <cstdint>

namespace qcompile {
namespace dw {

// One channel's geometry. The padded input plane is split by row and column phase: phase
// (rp, cp) holds padded rows rp, rp + sh, ... and columns cp, cp + sw, ... as a [Hq, Q] plane
// (plus zeros of slack), so output (oh, ow)'s tap (kh, kw) is element
// (oh + kh dh / sh) Q + ow + kw dw / sw of phase ((kh dh) % sh, (kw dw) % sw): for every tap the
// outputs, taken as one flat [OH, Q] row, read one contiguous run of a phase plane (its start:
// the tap's "run" offset, computed by the op). Only the phases some tap reads are built.
struct Geometry {
  int64_t OH, OW, taps;
  int64_t Hq, Q;  // rows and columns of a phase plane: ceil(padded height / sh), ceil(padded width / sw)
  // acc's length: the flat [OH, Q] outputs rounded up to whole 32-lane steps (no scalar tail)
  int64_t Run() const { return (OH * Q + 31) / 32 * 32; }
  // a plane with the slack that the longest run reads past its last row
  int64_t PlaneSize() const { return Hq * Q + Q + 32; }
};

// acc[oh Q + ow] = sum over taps t of wv[t] * phases[runs[t] + oh Q + ow], i.e. the window's
// sum for ow < OW (columns OW..Q-1 and the rounding to Run() are scratch). phases: int16
// x - x_zero_point, 0 in the padding; wv: the taps' w - w_zero_point. Exact: both factors are
// at most 255 in magnitude, so each product and the sum fit int32.
inline void SumChannel(const Geometry& g, const int64_t* __restrict runs,
                       const int16_t* __restrict phases, const int32_t* __restrict wv,
                       int32_t* __restrict acc) {
  const int64_t n = g.Run();
  for (int64_t i = 0; i < n; ++i) acc[i] = 0;
  for (int64_t t = 0; t < g.taps; ++t) {
    const int16_t* __restrict run = phases + runs[t];
    const int32_t w = wv[t];
    for (int64_t i = 0; i < n; ++i) acc[i] += w * int32_t{run[i]};
  }
}

using SumChannelFn = void (*)(const Geometry&, const int64_t*, const int16_t*, const int32_t*,
                              int32_t*);

}  // namespace dw
}  // namespace qcompile
