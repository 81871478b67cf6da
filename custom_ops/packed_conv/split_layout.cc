// The split activation layout (kernel_args.h, SplitLayout): built once per call by the op, read
// by the split-layout kernels (avx2 XnorConv and BitSerialConv). Plain C++, no ISA flags.
#include "kernel_args.h"

#include <cstring>

namespace qcompile {
namespace packed {

SplitLayout MakeSplitLayout(const ConvGeometry& s) {
  SplitLayout l{};
  const int64_t rows = (s.OH - 1) * s.sh + (s.KH - 1) * s.dh + 1;
  l.Hp = s.H + s.pt > rows ? s.H + s.pt : rows;
  // Output column OW-1's last tap reads q = OW-1 + ((KW-1)*dw)/sw.
  l.Wq = s.OW + ((s.KW - 1) * s.dw) / s.sw;
  l.word_step = 2 * l.Wq;
  l.phase_step = s.XW * l.word_step;
  l.words = s.N * l.Hp * s.sw * l.phase_step;
  l.steps = s.KH * s.KW * s.Wg;
  return l;
}

void SplitSteps(const ConvGeometry& s, const SplitLayout& l, int64_t* out) {
  for (int64_t kh = 0; kh < s.KH; ++kh)
    for (int64_t kw = 0; kw < s.KW; ++kw)
      for (int64_t k = 0; k < s.Wg; ++k)
        *out++ = kh * s.dh * s.sw * l.phase_step + ((kw * s.dw) % s.sw) * l.phase_step +
                 (kw * s.dw) / s.sw + k * l.word_step;
}

void SplitActivations(const ConvGeometry& s, const SplitLayout& l, const uint64_t* x,
                      uint64_t* xs) {
  std::memset(xs, 0, static_cast<size_t>(l.words) * sizeof(uint64_t));
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t ih = 0; ih < s.H && ih + s.pt < l.Hp; ++ih)
      for (int64_t iw = 0; iw < s.W; ++iw) {
        const int64_t wp = iw + s.pl, r = wp % s.sw, q = wp / s.sw;
        if (q >= l.Wq) break;
        const uint64_t* px = x + ((n * s.H + ih) * s.W + iw) * s.XW;
        uint64_t* dst = xs + ((n * l.Hp + ih + s.pt) * s.sw + r) * l.phase_step + q;
        for (int64_t k = 0; k < s.XW; ++k) {
          dst[k * l.word_step] = px[k] & kLowNibbles;
          dst[k * l.word_step + l.Wq] = (px[k] >> 4) & kLowNibbles;
        }
      }
}

}  // namespace packed
}  // namespace qcompile
