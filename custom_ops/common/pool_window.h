// The in-bounds taps of one max-pool window, shared by the pooling kernels (PackedMaxPool,
// PlaneMaxPool, Requantize's pool): max-pool pads with -inf, which never wins, so padded positions
// are skipped.
#pragma once

#include <cstdint>

namespace qcompile {

// Calls tap(ih, iw) for each in-bounds position of output (oh, ow)'s window. Geometry g has the
// fields H, W, KH, KW, sh, sw, dh, dw, pt, pl.
template <typename Geometry, typename Tap>
inline void ForEachWindowTap(const Geometry& g, int64_t oh, int64_t ow, Tap&& tap) {
  for (int64_t kh = 0; kh < g.KH; ++kh) {
    const int64_t ih = oh * g.sh - g.pt + kh * g.dh;
    if (ih < 0 || ih >= g.H) continue;
    for (int64_t kw = 0; kw < g.KW; ++kw) {
      const int64_t iw = ow * g.sw - g.pl + kw * g.dw;
      if (iw < 0 || iw >= g.W) continue;
      tap(ih, iw);
    }
  }
}

}  // namespace qcompile
