// The BitSerialConv / BitSerialGemm micro-kernels (custom_ops/SPEC.md, "Multi-bit operands: bit
// planes"), one translation unit each: bitserial_conv__popcnt.cc (-mpopcnt) and
// bitserial_conv__generic.cc (no ISA flags) build the same row (bitserial_row.h, internal
// linkage, so the two builds never mix); bitserial_conv__avx2.cc reads the split layout.
#pragma once

#include <cstdint>

#include "../packed_conv/kernel_args.h"

namespace qcompile {
namespace bitserial {

using namespace packed;  // the kernels are written against the core's types

void bitserial_conv2d_u64__popcnt(const BitSerialArgs&, int64_t, int64_t, int64_t, int64_t);
void bitserial_conv2d_u64__generic(const BitSerialArgs&, int64_t, int64_t, int64_t, int64_t);
void bitserial_conv2d_u64__avx2(const BitSerialArgs&, int64_t, int64_t, int64_t, int64_t);

}  // namespace bitserial
}  // namespace qcompile
