// BinarizePack's rank-4 kernel (custom_ops/SPEC.md): the sign bits of an NCHW float tensor, packed
// per pixel into the [N, H, W, G * Wg] layout (bit c % 64 of word g * Wg + c / 64 is 1 iff
// !(x >= 0): negative or NaN).
#pragma once

#include <cstdint>

namespace qcompile {
namespace xnor {

struct BinarizeRowArgs {
  const float* x;  // [N, C, H, W]
  int64_t C, H, W, G;
};

// Pixels per span (the unit of work of the kernels below): each channel's run of the span is read
// once, front to back, so the 64 channel streams of a word stay prefetchable.
constexpr int64_t kPackSpan = 256;

// Pixels [p0, p1) (flattened H x W, p1 - p0 <= kPackSpan) of image n: out points at pixel p0's
// G * Wg words, every one written (pad bits 0).
void BinarizePackSpan(const BinarizeRowArgs& a, int64_t n, int64_t p0, int64_t p1, uint64_t* out);

}  // namespace xnor
}  // namespace qcompile
