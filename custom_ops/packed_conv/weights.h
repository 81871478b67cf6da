// Weights of the packed-convolution kernels: the blocked layouts the fast kernels read
// (kernel_args.h, ConvArgs::wb / BitSerialArgs::wb), and W prepared in them once at kernel
// creation when it is a constant initializer (the usual case for compiled models).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernel_args.h"

namespace qcompile {
namespace packed {

// W [M, taps] (taps words per output channel) in `layout`; empty for kWeightsPlain.
std::vector<uint64_t> LayoutWeights(WeightLayout layout, const uint64_t* w, int64_t M, int64_t G,
                                    int64_t taps);

// W [M, taps, Q*Wg] as the split bit-plane kernels read it: plane-major [M, Q, taps, Wg], then
// in kWeightsBlockedNibbles.
std::vector<uint64_t> PlaneMajorWeights(const uint64_t* w, int64_t M, int64_t G, int64_t taps,
                                        int64_t Q, int64_t Wg);

// W laid out at kernel creation; a run uses it when its W is that same constant.
struct PreparedWeights {
  const uint64_t* src = nullptr;  // W's data in the session; nullptr when nothing was prepared
  std::vector<int64_t> shape;
  std::vector<uint64_t> laid_out;
  std::vector<int32_t> tap_pop;  // tap-concatenated binary W: popcount per tap [M, KH, KW]

  // This if w is the prepared constant, else nullptr.
  const PreparedWeights* Get(const uint64_t* w, const std::vector<int64_t>& ws) const {
    return (src && w == src && ws == shape) ? this : nullptr;
  }
  void Set(const uint64_t* w, const std::vector<int64_t>& ws, std::vector<uint64_t> data) {
    src = w;
    shape = ws;
    laid_out = std::move(data);
  }
};

}  // namespace packed
}  // namespace qcompile
