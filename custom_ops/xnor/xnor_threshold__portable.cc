// xnor_threshold__portable: the threshold bits of eight pixels' words built in scalar registers.
#include <algorithm>

#include "../common/conv_attrs.h"
#include "xnor_threshold.h"

namespace qcompile {
namespace xnor {

// Bit 1 (-1) iff not (up ? D >= t : D <= t), i.e. (D ^ f) < (t ^ f) with f = 0 for up and ~0
// for down (~ reverses the order of int32 without overflow): branch-free, since the bits of
// real data are unpredictable.
void ThresholdWordScalar(const ThresholdArgs& a, const int32_t* d_row, uint64_t* row,
                         int64_t word, int64_t m0, int64_t nb, int64_t ow) {
  const int32_t* thr = a.thr;
  const int32_t* dir = a.dir;
  const int64_t OW = a.OW, YW = a.YW, plane = a.plane;
  for (; ow + 8 <= OW; ow += 8) {
    uint64_t bits[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t j = 0; j < nb; ++j) {
      const int64_t m = m0 + j;
      const int32_t f = dir[m] > 0 ? 0 : ~int32_t{0};
      const int32_t tf = thr[m] ^ f;
      const int32_t* dm = d_row + m * plane + ow;
      for (int p = 0; p < 8; ++p) bits[p] |= static_cast<uint64_t>((dm[p] ^ f) < tf) << j;
    }
    for (int p = 0; p < 8; ++p) row[(ow + p) * YW + word] = bits[p];
  }
  for (; ow < OW; ++ow) {
    uint64_t bits = 0;
    for (int64_t j = 0; j < nb; ++j) {
      const int64_t m = m0 + j;
      const int32_t f = dir[m] > 0 ? 0 : ~int32_t{0};
      bits |= static_cast<uint64_t>((d_row[m * plane + ow] ^ f) < (thr[m] ^ f)) << j;
    }
    row[ow * YW + word] = bits;
  }
}

void xnor_threshold__portable(const ThresholdArgs& a, const int32_t* d_row, uint64_t* row) {
  // Output word k of a pixel holds channels m0 .. m0+nb-1 (one out_group's, 64 at most).
  for (int64_t og = 0; og < a.OG; ++og)
    for (int64_t k = 0; k < a.Wg_out; ++k) {
      const int64_t m0 = og * a.Mg_out + k * kWordBits;
      const int64_t nb = std::min<int64_t>(kWordBits, a.Mg_out - k * kWordBits);
      ThresholdWordScalar(a, d_row, row, og * a.Wg_out + k, m0, nb, 0);
    }
}

}  // namespace xnor
}  // namespace qcompile
