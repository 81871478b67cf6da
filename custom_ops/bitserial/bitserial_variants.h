// The bit-plane family's variant tables (common/kernel_select.h): one for BitSerialConv /
// BitSerialGemm (QCOMPILE_KERNEL overrides, as for the XNOR family), one for QuantizePack
// (attribute only). A new variant is a micro-kernel file plus a row here.
#pragma once

#include "../common/kernel_select.h"
#include "../packed_conv/run_planes.h"
#include "bitserial_kernel.h"
#include "quantize_pack.h"

namespace qcompile {
namespace bitserial {

struct BitSerialVariant {
  VariantId id;
  packed::PlaneKernel kernel;  // BitSerialConv, BitSerialConvThreshold
  DensePlaneFn dense;          // BitSerialGemm, BitSerialGemmThreshold
};

struct QuantizePackVariant {
  VariantId id;
  const QuantPackKernel* kernel;
};

const VariantTable<BitSerialVariant>& Variants();
const VariantTable<QuantizePackVariant>& QuantizePackVariants();

}  // namespace bitserial
}  // namespace qcompile
