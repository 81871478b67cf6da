// Phase planes of a strided window (DepthwiseConvInteger, DirectConvInteger): the padded plane
// split by row and column phase modulo the stride, so that for every tap the outputs, taken as
// one flat row, read one contiguous run of one phase plane.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace qcompile {

// The distinct phases the kernel's offsets k * step (k < K) fall in, modulo `stride`, and each
// offset's index among them: at most K of them, however large the stride.
inline void UsedPhases(int64_t K, int64_t step, int64_t stride, std::vector<int64_t>* phases,
                       std::vector<int64_t>* index_of) {
  for (int64_t k = 0; k < K; ++k) {
    const int64_t p = k * step % stride;
    const auto it = std::find(phases->begin(), phases->end(), p);
    index_of->push_back(it - phases->begin());
    if (it == phases->end()) phases->push_back(p);
  }
}

}  // namespace qcompile
