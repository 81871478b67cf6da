#include "packed_maxpool.h"

#include <algorithm>
#include <vector>

namespace qcompile {
namespace xnor {

void PackedMaxPoolRow(const PoolArgs& a, int64_t n, int64_t oh) {
  const int64_t Wt = a.Wt;
  std::vector<uint64_t> all_and(static_cast<size_t>(Wt)), any_or(static_cast<size_t>(Wt));
  for (int64_t ow = 0; ow < a.OW; ++ow) {
    // Over in-bounds taps only (max-pool pads with -inf, which never wins); a window with
    // no in-bounds tap gives AND = all ones, OR = 0, as the reference.
    std::fill(all_and.begin(), all_and.end(), ~uint64_t{0});
    std::fill(any_or.begin(), any_or.end(), uint64_t{0});
    for (int64_t kh = 0; kh < a.KH; ++kh) {
      const int64_t ih = oh * a.sh - a.pt + kh * a.dh;
      if (ih < 0 || ih >= a.H) continue;
      for (int64_t kw = 0; kw < a.KW; ++kw) {
        const int64_t iw = ow * a.sw - a.pl + kw * a.dw;
        if (iw < 0 || iw >= a.W) continue;
        const uint64_t* px = a.x + ((n * a.H + ih) * a.W + iw) * Wt;
        for (int64_t k = 0; k < Wt; ++k) {
          all_and[k] &= px[k];
          any_or[k] |= px[k];
        }
      }
    }
    uint64_t* o = a.y + ((n * a.OH + oh) * a.OW + ow) * Wt;
    for (int64_t k = 0; k < Wt; ++k) o[k] = (all_and[k] & ~a.mask[k]) | (any_or[k] & a.mask[k]);
  }
}

}  // namespace xnor
}  // namespace qcompile
