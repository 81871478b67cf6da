// The checks Requantize and DepthwiseConvRequantize share: the codes' bounds and the epilogue's
// inputs (custom_ops/SPEC.md, Requantize).
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "../common/op_util.h"

namespace qcompile {

// The codes' clamp: attributes lo, hi (default T's range, lo <= hi, both in it) into *lo, *hi.
template <typename T>
inline void ParseCodeBounds(const Attrs& at, const std::string& label, int64_t* lo, int64_t* hi) {
  constexpr int64_t tmin = std::numeric_limits<T>::min(), tmax = std::numeric_limits<T>::max();
  *lo = at.Int("lo", tmin);
  *hi = at.Int("hi", tmax);
  if (*lo < tmin || *hi > tmax || *lo > *hi)
    Fail(label, "attributes lo, hi: expected ", tmin, " <= lo <= hi <= ", tmax, ", got ", *lo, ", ", *hi);
}

// The epilogue's inputs for m channels: scale, bias [m], y_scale one or m positive values,
// y_zero_point one value; `channels_of` says where m comes from in the messages.
inline void CheckEpilogueInputs(const std::string& label, int64_t m, const std::string& channels_of,
                                const std::vector<int64_t>& scale, const std::vector<int64_t>& bias,
                                const std::vector<int64_t>& y_scale, const std::vector<int64_t>& y_zp,
                                const float* ys) {
  if (NumElements(scale) != m || NumElements(bias) != m)
    Fail(label, "inputs scale, bias: expected ", m, " values each (one per channel", channels_of,
         "), got shapes ", ShapeStr(scale), ", ", ShapeStr(bias));
  const int64_t n_ys = NumElements(y_scale);
  if ((n_ys != 1 && n_ys != m) || NumElements(y_zp) != 1)
    Fail(label, "inputs y_scale, y_zero_point: expected a scalar or ", m, " scales (per channel) "
         "and a scalar zero point, got shapes ", ShapeStr(y_scale), ", ", ShapeStr(y_zp));
  for (int64_t c = 0; c < n_ys; ++c)
    if (!(ys[c] > 0.0f)) Fail(label, "input y_scale: expected positive scales, got ", ys[c]);
}

}  // namespace qcompile
