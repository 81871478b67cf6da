// The 8 x 8 bit-matrix transpose the packing kernels share (BinarizePack, XnorConvThreshold).
#pragma once

#include <cstdint>

namespace qcompile {
namespace xnor {

// The 8x8 bit matrix in x (byte i = row i, bit j = column j) transposed: byte j, bit i.
inline uint64_t Transpose8x8(uint64_t x) {
  uint64_t t = (x ^ (x >> 7)) & 0x00AA00AA00AA00AAull;
  x ^= t ^ (t << 7);
  t = (x ^ (x >> 14)) & 0x0000CCCC0000CCCCull;
  x ^= t ^ (t << 14);
  t = (x ^ (x >> 28)) & 0x00000000F0F0F0F0ull;
  return x ^ t ^ (t << 28);
}

}  // namespace xnor
}  // namespace qcompile
