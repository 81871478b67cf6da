// Built with -mpopcnt: __builtin_popcountll is one instruction. Called only when the CPU has it.
#include "bitserial_row.h"

namespace qcompile {
namespace bitserial {

void bitserial_conv2d_u64__popcnt(const BitSerialArgs& a, int64_t n, int64_t m0, int64_t m1,
                                  int64_t oh) {
  BitSerialRow(a, n, m0, m1, oh);
}

void bitserial_dense_u64__popcnt(const DensePlaneArgs& a, int64_t n, int64_t b0, int64_t b1) {
  DenseRow(a, n, b0, b1);
}

}  // namespace bitserial
}  // namespace qcompile
