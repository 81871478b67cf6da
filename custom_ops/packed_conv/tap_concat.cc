#include "tap_concat.h"

#include <cstdlib>
#include <cstring>

namespace qcompile {
namespace tapconcat {

int TapConcatMode() {
  const char* e = std::getenv("QCOMPILE_XNOR_TAP_CONCAT");
  if (e && std::strcmp(e, "0") == 0) return kTapConcatOff;
  if (e && std::strcmp(e, "force") == 0) return kTapConcatForce;
  return kTapConcatAuto;
}

std::vector<int32_t> TapConcatEdges(const packed::ConvGeometry& s, const int32_t* tap_pop,
                                    packed::ConvArgs* a) {
  // Output columns whose window lies inside the image: the same split as ConvRowBlocked's.
  int64_t ow_a, ow_b;
  packed::InteriorColumns(s, &ow_a, &ow_b);
  a->edge_a = ow_a;
  a->edge_b = ow_b;
  const int64_t E = ow_a + s.OW - ow_b, stride = s.KH + 1;
  std::vector<int32_t> corr(static_cast<size_t>(E * s.M * stride), 0);
  for (int64_t e = 0; e < E; ++e) {
    const int64_t ow = e < ow_a ? e : ow_b + (e - ow_a);
    const int64_t iw0 = ow * s.sw - s.pl;
    for (int64_t m = 0; m < s.M; ++m) {
      int32_t* c = corr.data() + (e * s.M + m) * stride;
      for (int64_t kh = 0; kh < s.KH; ++kh) {
        int64_t v = 0;
        for (int64_t kw = 0; kw < s.KW; ++kw) {
          const int64_t iw = iw0 + kw * s.dw;
          if (iw >= 0 && iw < s.W) continue;
          v += 2 * tap_pop[(m * s.KH + kh) * s.KW + kw] - s.Cg;
        }
        c[kh + 1] = static_cast<int32_t>(c[kh] + v);
      }
    }
  }
  return corr;
}

}  // namespace tapconcat
}  // namespace qcompile
