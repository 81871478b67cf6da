// The one list of XnorConv/XnorGemm kernel variants. Dispatch, the exported variant list that
// Python tests and benchmarks iterate over (qcompile.runtime.kernel_variants()), and the
// QCOMPILE_KERNEL override all read this table; a new variant is added here and nowhere else.
#pragma once

#include <cstddef>
#include <string>

#include "../bitserial/bitserial_kernel.h"
#include "../lut/lut_kernel.h"
#include "xnor_kernel.h"

namespace qcompile {
namespace xnor {

struct XnorVariant {
  const char* name;      // value of QCOMPILE_KERNEL that forces it
  const char* isa;       // what the CPU must have, for messages ("" = nothing)
  bool (*supported)();   // from CPU flags read at load; false when not compiled in
  WeightLayout weights;  // kWeightsPlain: reads ConvArgs::w; else ConvArgs::wb in that layout
  bool split_x;          // reads ConvArgs::xs (activations split into nibbles)
  ConvRowFn conv;
  CeilingFn ceiling;  // popcount-ceiling microbenchmark; nullptr: none (reference)
  // BitSerialConv / BitSerialGemm under this variant; bitserial_split: it reads
  // BitSerialArgs::xs / ::wb (split activations, nibble-blocked weights).
  bitserial::BitSerialRowFn bitserial;
  bool bitserial_split;
  // The table-lookup kernel (custom_ops/lut/) this variant runs instead of its own on
  // convolutions (not the Gemm ops): never, where lut_faster (XnorConv, XnorConvThreshold) /
  // lut_bitserial_faster (BitSerialConv) says it measured faster, or always (where it can:
  // <= 4 activation planes, int8 table entries, no pad bits set).
  lut::LutTileFn lut;
  lut::LutUse lut_use;
  bool (*lut_faster)(const ConvGeometry&);
  bool (*lut_bitserial_faster)(const ConvGeometry&);
};

// All variants, in order of preference (best first).
const XnorVariant* Variants(size_t* count);

// The variant a new kernel uses: QCOMPILE_KERNEL when set (an error message in *error when it
// names an unknown or unsupported variant, and nullptr returned), else the first supported.
const XnorVariant* SelectVariant(std::string* error);

// Binary multiply-adds per second of the named variant's inner loop on one core, measured for
// about `seconds`; 0 when the name is unknown or the CPU cannot run it.
double PopcountCeiling(const char* name, double seconds);

}  // namespace xnor
}  // namespace qcompile
