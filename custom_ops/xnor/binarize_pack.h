// BinarizePack's rank-4 row (custom_ops/SPEC.md): the sign bits of one row of an NCHW float tensor,
// packed per pixel into the [N, H, W, G * Wg] layout (bit c % 64 of word g * Wg + c / 64 is 1 iff
// !(x >= 0): negative or NaN).
#pragma once

#include <cstdint>

namespace qcompile {
namespace xnor {

struct BinarizeRowArgs {
  const float* x;  // [N, C, H, W]
  int64_t C, H, W, G;
};

// out: the row's W * (G * Wg) words, zeroed by the caller.
void BinarizePackRow(const BinarizeRowArgs& a, int64_t n, int64_t h, uint64_t* out);

}  // namespace xnor
}  // namespace qcompile
