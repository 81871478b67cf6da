#include "packed_maxpool.h"

#include <algorithm>
#include <vector>

#include "../common/pool_window.h"

namespace qcompile {
namespace xnor {
namespace {

// Calls tap(px) with the Wt words of each in-bounds position of output (n, oh, ow)'s window.
template <typename Args, typename Tap>
void ForEachWindowPixel(const Args& a, int64_t n, int64_t oh, int64_t ow, int64_t Wt, Tap&& tap) {
  ForEachWindowTap(a, oh, ow, [&](int64_t ih, int64_t iw) { tap(a.x + ((n * a.H + ih) * a.W + iw) * Wt); });
}

}  // namespace

void PackedMaxPoolRow(const PoolArgs& a, int64_t n, int64_t oh) {
  const int64_t Wt = a.Wt;
  std::vector<uint64_t> all_and(static_cast<size_t>(Wt)), any_or(static_cast<size_t>(Wt));
  for (int64_t ow = 0; ow < a.OW; ++ow) {
    // Over in-bounds taps only (max-pool pads with -inf, which never wins); a window with
    // no in-bounds tap gives AND = all ones, OR = 0, as the reference.
    std::fill(all_and.begin(), all_and.end(), ~uint64_t{0});
    std::fill(any_or.begin(), any_or.end(), uint64_t{0});
    ForEachWindowPixel(a, n, oh, ow, Wt, [&](const uint64_t* px) {
      for (int64_t k = 0; k < Wt; ++k) {
        all_and[k] &= px[k];
        any_or[k] |= px[k];
      }
    });
    uint64_t* o = a.y + ((n * a.OH + oh) * a.OW + ow) * Wt;
    for (int64_t k = 0; k < Wt; ++k) o[k] = (all_and[k] & ~a.mask[k]) | (any_or[k] & a.mask[k]);
  }
}

void PlaneMaxPoolRow(const PlanePoolArgs& a, int64_t n, int64_t oh) {
  const int64_t P = a.P, Wg = a.Wg, Wt = a.G * a.P * a.Wg;
  std::vector<uint64_t> acc(static_cast<size_t>(Wt));
  for (int64_t ow = 0; ow < a.OW; ++ow) {
    // 0, the smallest flipped code, is max's identity: a window with no in-bounds tap (padded
    // positions are skipped, as -inf never wins) gives flip itself.
    std::fill(acc.begin(), acc.end(), uint64_t{0});
    ForEachWindowPixel(a, n, oh, ow, Wt, [&](const uint64_t* px) {
      for (int64_t g = 0; g < a.G; ++g) {
        for (int64_t k = 0; k < Wg; ++k) {
          uint64_t* acc_gk = acc.data() + g * P * Wg + k;
          const uint64_t* px_gk = px + g * P * Wg + k;
          const uint64_t* flip_gk = a.flip + g * P * Wg + k;
          // From the top plane down: b wins a bit position once it has a 1 where acc has a
          // 0 and the higher planes were equal.
          uint64_t b_wins = 0, equal = ~uint64_t{0};
          for (int64_t p = P - 1; p >= 0; --p) {
            const uint64_t av = acc_gk[p * Wg], bv = px_gk[p * Wg] ^ flip_gk[p * Wg];
            b_wins |= equal & bv & ~av;
            equal &= ~(av ^ bv);
          }
          for (int64_t p = 0; p < P; ++p) {
            const uint64_t bv = px_gk[p * Wg] ^ flip_gk[p * Wg];
            acc_gk[p * Wg] = (acc_gk[p * Wg] & ~b_wins) | (bv & b_wins);
          }
        }
      }
    });
    uint64_t* o = a.y + ((n * a.OH + oh) * a.OW + ow) * Wt;
    for (int64_t w = 0; w < Wt; ++w) o[w] = acc[w] ^ a.flip[w];
  }
}

}  // namespace xnor
}  // namespace qcompile
