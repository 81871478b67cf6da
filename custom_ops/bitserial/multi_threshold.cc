#include "multi_threshold.h"

#include <algorithm>

namespace qcompile {
namespace bitserial {

// count = #{k : (D ^ f) >= (T_k ^ f)} with f = 0 for up and ~0 for down (~ reverses the order of
// int32 without overflow), so both directions are one branch-free loop.
void MultiThresholdRow(const MultiThresholdArgs& a, const float* d_row, uint64_t* row) {
  const int64_t L = a.L, P = a.P, OW = a.OW, YW = a.YW;
  const uint64_t code_mask = P >= 64 ? ~uint64_t{0} : (uint64_t{1} << P) - 1;
  std::fill(row, row + OW * YW, uint64_t{0});
  for (int64_t og = 0; og < a.OG; ++og) {
    for (int64_t c = 0; c < a.Mg_out; ++c) {
      const int64_t m = og * a.Mg_out + c;
      const int64_t k = c / 64, bit = c % 64;
      const int32_t f = a.dir[m] > 0 ? 0 : ~int32_t{0};
      const int32_t* t = a.thr + m * L;
      const float* dm = d_row + m * a.plane;
      uint64_t* out = row + (og * P) * a.Wg_out + k;
      for (int64_t ow = 0; ow < OW; ++ow) {
        const int32_t d = static_cast<int32_t>(dm[ow]) ^ f;
        int64_t count = 0;
        for (int64_t j = 0; j < L; ++j) count += static_cast<int64_t>(d >= (t[j] ^ f));
        // two's complement bits of v in P planes (v fits: checked by the op)
        const uint64_t u = static_cast<uint64_t>(a.out_base + count) & code_mask;
        uint64_t* px = out + ow * YW;
        for (int64_t p = 0; p < P; ++p) px[p * a.Wg_out] |= ((u >> p) & 1) << bit;
      }
    }
  }
}

}  // namespace bitserial
}  // namespace qcompile
