// lut_conv2d_i8__scalar: the table-lookup kernel in plain C++, on the same layouts as the ISA
// kernels (a check of the layouts, and the fallback where no ISA kernel is built).
#include "lut_tile.h"

namespace qcompile {
namespace lut {

void lut_conv2d_i8__scalar(const LutConvArgs& a, int64_t n, int64_t g, int64_t b, int64_t v0,
                           int64_t v1) {
  const LutPlan& p = a.plan;
  const uint8_t* xg = a.xb + (n * p.G + g) * p.C4 * p.sh * p.sw * p.pitch;
  const int8_t* tb = a.tables + (g * p.blocks + b) * p.steps * kLutM * kTableBytes;
  const int64_t m0 = g * p.Mg + b * kLutM;
  const int64_t nm = p.Mg - b * kLutM < kLutM ? p.Mg - b * kLutM : kLutM;
  for (int64_t v = v0; v < v1; v += kLutPx) {
    const int64_t count = v1 - v < kLutPx ? v1 - v : kLutPx;
    int32_t d[kLutM][kLutPx] = {};
    for (int64_t s = 0; s < p.steps; ++s) {
      const uint8_t* xp = xg + a.step_off[s] + v;
      const int8_t* t = tb + s * kLutM * kTableBytes;
      for (int64_t j = 0; j < kLutM; ++j)
        for (int64_t i = 0; i < count; ++i)
          if (!(xp[i] & kPadByte)) d[j][i] += t[j * kTableBytes + (xp[i] & 15)];
    }
    StoreTile(a, n, m0, nm, v, count, d[0], kLutPx);
  }
}

}  // namespace lut
}  // namespace qcompile
