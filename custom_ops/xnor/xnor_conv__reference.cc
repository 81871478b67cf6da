// xnor_conv2d_u64__reference: the SPEC formula taken literally, one channel bit at a time and
// one tap at a time with an explicit bounds test. Slow and obviously correct; the fast kernels
// are tested against it as well as against the numpy reference.
#include "xnor_kernel.h"

namespace qcompile {
namespace xnor {

static inline int Sign(uint64_t word, int64_t bit) {
  return ((word >> bit) & 1u) ? -1 : 1;  // bit 0 <-> +1, bit 1 <-> -1
}

void xnor_conv2d_u64__reference(const ConvArgs& a, int64_t n, int64_t g, int64_t b0, int64_t b1,
                                int64_t oh) {
  const ConvGeometry& s = a.geo;
  const int64_t m_begin = g * s.Mg + b0 * kBlockM;
  int64_t m_end = g * s.Mg + b1 * kBlockM;
  if (m_end > (g + 1) * s.Mg) m_end = (g + 1) * s.Mg;
  for (int64_t m = m_begin; m < m_end; ++m) {
    for (int64_t ow = 0; ow < s.OW; ++ow) {
      int64_t d = 0;
      for (int64_t kh = 0; kh < s.KH; ++kh) {
        const int64_t ih = oh * s.sh - s.pt + kh * s.dh;
        for (int64_t kw = 0; kw < s.KW; ++kw) {
          const int64_t iw = ow * s.sw - s.pl + kw * s.dw;
          if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) continue;  // zero padding: adds 0
          const uint64_t* xp = a.x + ((n * s.H + ih) * s.W + iw) * s.XW + g * s.Wg;
          const uint64_t* wp = a.w + ((m * s.KH + kh) * s.KW + kw) * s.Wg;
          for (int64_t c = 0; c < s.Cg; ++c) {
            d += Sign(xp[c / 64], c % 64) * Sign(wp[c / 64], c % 64);
          }
        }
      }
      const int32_t di = static_cast<int32_t>(d);
      const int64_t at = ((n * s.M + m) * s.OH + oh) * s.OW + ow;
      if (a.d) {
        a.d[at] = di;
      } else {
        a.y[at] = static_cast<float>(di) * a.scale[m] + a.bias[m];
      }
    }
  }
}

}  // namespace xnor
}  // namespace qcompile
