#include "weights.h"

namespace qcompile {
namespace packed {

std::vector<uint64_t> LayoutWeights(WeightLayout layout, const uint64_t* w, int64_t M, int64_t G,
                                    int64_t taps) {
  std::vector<uint64_t> blocked;
  if (layout == kWeightsPlain) return blocked;
  const bool nib = layout == kWeightsBlockedNibbles;
  const int64_t Mg = M / G;
  const int64_t blocks_per_group = (Mg + kBlockM - 1) / kBlockM;
  const int64_t per_tap = kBlockM * (nib ? 2 : 1);
  blocked.assign(static_cast<size_t>(G * blocks_per_group * taps * per_tap), 0);
  for (int64_t m = 0; m < M; ++m) {
    const int64_t g = m / Mg, b = (m % Mg) / kBlockM, j = (m % Mg) % kBlockM;
    const uint64_t* src = w + m * taps;
    uint64_t* dst = blocked.data() + (g * blocks_per_group + b) * taps * per_tap + j;
    for (int64_t t = 0; t < taps; ++t) {
      if (nib) {
        dst[t * per_tap] = src[t] & kLowNibbles;
        dst[t * per_tap + kBlockM] = (src[t] >> 4) & kLowNibbles;
      } else {
        dst[t * per_tap] = src[t];
      }
    }
  }
  return blocked;
}

std::vector<uint64_t> PlaneMajorWeights(const uint64_t* w, int64_t M, int64_t G, int64_t taps,
                                        int64_t Q, int64_t Wg) {
  std::vector<uint64_t> pm(static_cast<size_t>(M * taps * Q * Wg));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t t = 0; t < taps; ++t)
      for (int64_t q = 0; q < Q; ++q)
        for (int64_t k = 0; k < Wg; ++k)
          pm[((m * Q + q) * taps + t) * Wg + k] = w[((m * taps + t) * Q + q) * Wg + k];
  return LayoutWeights(kWeightsBlockedNibbles, pm.data(), M, G, taps * Q * Wg);
}

}  // namespace packed
}  // namespace qcompile
