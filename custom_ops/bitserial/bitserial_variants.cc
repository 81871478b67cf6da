#include "bitserial_variants.h"

#include "../common/cpu_features.h"
#include "bitserial_kernel.h"

namespace qcompile {
namespace bitserial {
namespace {

#ifdef QCOMPILE_HAVE_AVX2
constexpr BitSerialRowFn kAvx2 = bitserial_conv2d_u64__avx2;
constexpr lut::LutTileFn kLutAvx2 = lut::lut_conv2d_i8__avx2;
#else
constexpr BitSerialRowFn kAvx2 = nullptr;
constexpr lut::LutTileFn kLutAvx2 = nullptr;
#endif
#ifdef QCOMPILE_HAVE_SSE2
constexpr const QuantPackKernel* kSse2 = &quantize_pack__sse2;
#else
constexpr const QuantPackKernel* kSse2 = nullptr;
#endif

// Names as in the XNOR table, so one QCOMPILE_KERNEL value forces both families: avx2 (split
// operands, nibble lookup), portable (POPCNT), reference (the compiler's generic popcount).
// There is no AVX-512 bit-plane kernel yet. avx2 runs the table-lookup kernel
// (custom_ops/lut/) on the convolutions where it measured faster (LutBeatsAvx2BitSerial;
// QCOMPILE_LUT=0 turns that off), avx2_lut on every convolution it can.
const BitSerialVariant kVariants[] = {
    {{"avx2", "avx2+popcnt", isa::Avx2Popcnt},
     {kAvx2, true, bitserial_conv2d_u64__popcnt, kLutAvx2, lut::kLutWhenFaster,
      lut::LutBeatsAvx2BitSerial}},
    {{"avx2_lut", "avx2+popcnt", isa::Avx2Popcnt},
     {kAvx2, true, bitserial_conv2d_u64__popcnt, kLutAvx2, lut::kLutAlways, nullptr}},
    {{"portable", "popcnt", isa::Popcnt},
     {bitserial_conv2d_u64__popcnt, false, nullptr, nullptr, lut::kLutOff, nullptr}},
    {{"reference", "", isa::None},
     {bitserial_conv2d_u64__generic, false, nullptr, nullptr, lut::kLutOff, nullptr}},
};

const QuantizePackVariant kQuantizeVariants[] = {
    {{"sse2", "sse2", isa::Sse2}, kSse2},
    {{"portable", "", isa::None}, &quantize_pack__portable},
};

constexpr VariantTable<BitSerialVariant> kTable{
    kVariants, sizeof(kVariants) / sizeof(kVariants[0]), "QCOMPILE_KERNEL"};
constexpr VariantTable<QuantizePackVariant> kQuantizeTable{
    kQuantizeVariants, sizeof(kQuantizeVariants) / sizeof(kQuantizeVariants[0]), nullptr};

}  // namespace

const VariantTable<BitSerialVariant>& Variants() { return kTable; }
const VariantTable<QuantizePackVariant>& QuantizePackVariants() { return kQuantizeTable; }

}  // namespace bitserial
}  // namespace qcompile
