// PackedMaxPool's kernel (custom_ops/SPEC.md): max-pool of ±1 bits packed in words, as AND (bits
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

}  // namespace xnor
}  // namespace qcompile
