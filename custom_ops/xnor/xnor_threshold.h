// XnorConvThreshold's bit packing (custom_ops/SPEC.md): from D of one output row, bit j of output
// word k of pixel ow is 1 (-1) iff not (up ? D >= t : D <= t) for channel m0 + j. One variant per
// ISA: xnor_threshold__sse2.cc, xnor_threshold__portable.cc (the XNOR table picks).
#pragma once

#include <cstdint>

namespace qcompile {
namespace xnor {

struct ThresholdArgs {
  const int32_t* thr;  // [M]
  const int32_t* dir;  // [M], +1 or -1
  int64_t plane;       // OH*OW: between channels of D
  int64_t OG, Mg_out, Wg_out, OW, YW;
};

// row[ow*YW + word] for every pixel ow of the row and word of the pixel; d_row: D of channel 0
// of the row (channel m at d_row + m*plane).
using ThresholdRowFn = void (*)(const ThresholdArgs& a, const int32_t* d_row, uint64_t* row);

void xnor_threshold__portable(const ThresholdArgs& a, const int32_t* d_row, uint64_t* row);
void xnor_threshold__sse2(const ThresholdArgs& a, const int32_t* d_row, uint64_t* row);

// The scalar loops for pixels [ow, OW) of output word `word` (channels m0 .. m0+nb-1).
void ThresholdWordScalar(const ThresholdArgs& a, const int32_t* d_row, uint64_t* row,
                         int64_t word, int64_t m0, int64_t nb, int64_t ow);

}  // namespace xnor
}  // namespace qcompile
