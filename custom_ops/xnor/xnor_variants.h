// The one table of XnorConv / XnorConvThreshold / XnorGemm kernel variants (common/kernel_select.h:
// selected per node by the `kernel` attribute, QCOMPILE_KERNEL overrides). A new variant is a
// micro-kernel file xnor_conv__<isa>.cc plus a row here.
#pragma once

#include <cstddef>

#include "../common/kernel_select.h"
#include "../packed_conv/run_binary.h"
#include "xnor_kernel.h"
#include "xnor_threshold.h"

namespace qcompile {
namespace xnor {

struct XnorVariant {
  VariantId id;
  packed::BinaryKernel kernel;
  CeilingFn ceiling;  // popcount-ceiling microbenchmark; nullptr: none (reference)
  ThresholdRowFn threshold;  // XnorConvThreshold's bit packing
};

// All variants, in order of preference (best first).
const VariantTable<XnorVariant>& Variants();

// Binary multiply-adds per second of the named variant's inner loop on one core, measured for
// about `seconds`; 0 when the name is unknown or the CPU cannot run it.
double PopcountCeiling(const char* name, double seconds);

}  // namespace xnor
}  // namespace qcompile
