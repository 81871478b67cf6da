// PackedMaxPool's and PlaneMaxPool's kernels (custom_ops/SPEC.md): max-pool of ±1 bits packed in words, as AND (bits
// that are 1 = -1 in every tap) or OR (in some tap) per bit, as or_mask selects.
#pragma once

#include <cstdint>

namespace qcompile {
namespace xnor {

struct PoolArgs {
  const uint64_t* x;     // [N, H, W, Wt]
  const uint64_t* mask;  // [Wt]
  uint64_t* y;           // [N, OH, OW, Wt]
  int64_t H, W, Wt, OH, OW, KH, KW, sh, sw, dh, dw, pt, pl;
};

// y[n, oh, :, :].
void PackedMaxPoolRow(const PoolArgs& a, int64_t n, int64_t oh);

// PlaneMaxPool (custom_ops/SPEC.md): max-pool of P-plane codes, layout [N, H, W, G*P*Wg]
// (group g, plane p, word k at (g*P + p)*Wg + k). Each tap is XORed with `flip` (per word), the
// codes are max-pooled as unsigned P-bit numbers, bit-sliced across the planes, and the result
// XORed with `flip` again: flipping the top plane orders two's complement codes, flipping every
// plane turns the max into a min (channels of or_mask).
struct PlanePoolArgs {
  const uint64_t* x;     // [N, H, W, G*P*Wg]
  const uint64_t* flip;  // [G*P*Wg]
  uint64_t* y;           // [N, OH, OW, G*P*Wg]
  int64_t H, W, G, P, Wg, OH, OW, KH, KW, sh, sw, dh, dw, pt, pl;
};

// y[n, oh, :, :].
void PlaneMaxPoolRow(const PlanePoolArgs& a, int64_t n, int64_t oh);

}  // namespace xnor
}  // namespace qcompile
