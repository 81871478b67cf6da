// The output side shared by the table-lookup kernels: D of one channel block at kLutPx virtual
// positions goes to y (or ConvArgs-style d), dropping the positions that are not outputs.
// Anonymous namespace: each ISA translation unit keeps its own copy (see xnor/conv_row.h).
#pragma once

#include <cstdint>

#include "lut_kernel.h"

namespace qcompile {
namespace lut {
namespace {

// d[j * d_stride + i]: D of channel m0 + j at virtual position v0 + i, j < nm, i < count.
inline void StoreTile(const LutConvArgs& a, int64_t n, int64_t m0, int64_t nm, int64_t v0,
                      int64_t count, const int32_t* d, int64_t d_stride) {
  const LutPlan& p = a.plan;
  const int64_t plane = p.OH * p.OW;
  // Walk the virtual positions as runs of one output row (contiguous in y), so the inner
  // loops are plain and vectorise; positions past OW in a row are skipped.
  int64_t oh = v0 / p.Wq, ow = v0 % p.Wq, i = 0;
  while (i < count) {
    const int64_t run = (p.OW - ow < count - i) ? p.OW - ow : count - i;
    if (run > 0) {
      for (int64_t j = 0; j < nm; ++j) {
        const int32_t* dj = d + j * d_stride + i;
        const int64_t at = (n * p.M + m0 + j) * plane + oh * p.OW + ow;
        if (a.d) {
          for (int64_t k = 0; k < run; ++k) a.d[at + k] = dj[k];
        } else {
          const float sc = a.scale[m0 + j], bi = a.bias[m0 + j];
          float* yj = a.y + at;
          for (int64_t k = 0; k < run; ++k) yj[k] = static_cast<float>(dj[k]) * sc + bi;
        }
      }
    }
    i += p.Wq - ow;  // to the start of the next row
    ow = 0;
    ++oh;
  }
}

}  // namespace
}  // namespace lut
}  // namespace qcompile
