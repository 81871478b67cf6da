// The sum kernels of qcompile::DirectConvInteger (an int8 conv without im2col); included by
// direct_conv.cc (portable) and the ISA files direct_conv__avx2.cc / __avx512vnni.cc / __amx.cc.
//
// Layout. The padded input plane is split by row and column phase modulo the strides (one phase
// at stride 1): phase (rp, cp) holds padded rows rp, rp + sh, ... and columns cp, cp + sw, ... as
// a [Hq, Q] plane, so output (oh, ow)'s tap (kh, kw) is element (oh + kh dh / sh, ow + kw dw / sw)
// of phase ((kh dh) % sh, (kw dw) % sw). Taken over the flat outputs q = oh Q + ow (columns
// OW..Q-1 are scratch), every tap reads one contiguous run of one phase plane, starting at
// runs[t]. Each used phase is packed per image and group as [CQ, P, 4] bytes: channel quad cq
// holds input channels 4cq..4cq+3 of every pixel of the plane, flattened, each pixel's four
// channels adjacent (what vpdpbusd / vpmaddubsw multiply and add in one lane); runs[t] counts
// pixels from the first phase's start (a phase is CQ P pixels). So a vector of 16 (8)
// consecutive q times one broadcast weight quad is a whole tap's multiply-add, for any C, H, W.
// x values are u8 (int8 inputs are shifted by +128 with their zero point); the padding holds
// the zero point; the accumulators start at -x_zp * sum(w), so a sum is ConvInteger's
// sum (x - x_zp)(w - w_zp) with w already w - w_zp, which the op checks fits int8.
// w is packed as [M / MB, taps, CQ, MB, 4] (MB output channels a block, the variant's own;
// channels past M and C are zero weights). The AMX variant reads 16 quads a step: CQ is then
// rounded up to a multiple of 16 (when above 16) and w is [M / MB, taps, CQ / qk, MB, qk, 4]
// with qk = min(16, CQ): each block's rows of qk quads, one tile row per output channel.
#pragma once

#include <cstdint>

namespace qcompile {
namespace dc {

struct Geometry {
  int64_t CQ, taps, Q;  // input channel quads (with the variant's rounding), KH KW, flat row width
  int64_t flat;         // the flat outputs a channel needs: OH Q, less the last row's scratch
  int64_t run;          // flat rounded up to the variant's pixel tile
  int64_t P;            // pixels per quad plane: every (phase) pixel plus the slack the runs read
};

// One block of MB output channels: acc[j, q] for j < MB, q < g.run (channel j's flat outputs),
// from packed x (xq), this block's packed weights (wq: [taps, CQ, MB, 4]) and the accumulators'
// starting values init[j].
using SumBlockFn = void (*)(const Geometry& g, const int64_t* runs, const uint8_t* xq,
                            const int8_t* wq, const int32_t* init, int32_t* acc);

// The portable kernel (MB = 4, a tile of 1 output): exact int32 arithmetic, the reference the vector variants match.
constexpr int64_t kPortableBlock = 4;
inline void SumBlockPortable(const Geometry& g, const int64_t* __restrict runs,
                             const uint8_t* __restrict xq, const int8_t* __restrict wq,
                             const int32_t* __restrict init, int32_t* __restrict acc) {
  constexpr int64_t MB = kPortableBlock;
  for (int64_t j = 0; j < MB; ++j)
    for (int64_t q = 0; q < g.run; ++q) acc[j * g.run + q] = init[j];
  for (int64_t t = 0; t < g.taps; ++t)
    for (int64_t cq = 0; cq < g.CQ; ++cq) {
      const uint8_t* x = xq + (cq * g.P + runs[t]) * 4;
      const int8_t* w = wq + (t * g.CQ + cq) * MB * 4;
      for (int64_t j = 0; j < MB; ++j) {
        const int32_t w0 = w[4 * j], w1 = w[4 * j + 1], w2 = w[4 * j + 2], w3 = w[4 * j + 3];
        int32_t* a = acc + j * g.run;
        for (int64_t q = 0; q < g.run; ++q)
          a[q] += w0 * x[4 * q] + w1 * x[4 * q + 1] + w2 * x[4 * q + 2] + w3 * x[4 * q + 3];
      }
    }
}

}  // namespace dc
}  // namespace qcompile
