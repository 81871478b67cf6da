#include "bitserial_variants.h"

#include "../common/cpu_features.h"
#include "bitserial_kernel.h"

namespace qcompile {
namespace bitserial {
namespace {

#ifdef QCOMPILE_HAVE_AVX2
constexpr BitSerialRowFn kAvx2 = bitserial_conv2d_u64__avx2;
constexpr DensePlaneFn kDenseAvx2 = bitserial_dense_u64__avx2;
constexpr lut::LutTileFn kLutAvx2 = lut::lut_conv2d_i8__avx2;
#else
constexpr BitSerialRowFn kAvx2 = nullptr;
constexpr DensePlaneFn kDenseAvx2 = nullptr;
constexpr lut::LutTileFn kLutAvx2 = nullptr;
#endif
#ifdef QCOMPILE_HAVE_AVX512
constexpr DensePlaneFn kDenseAvx512 = bitserial_dense_u64__avx512vpopcnt;
#else
constexpr DensePlaneFn kDenseAvx512 = nullptr;
#endif
#ifdef QCOMPILE_HAVE_SSE2
constexpr const QuantPackKernel* kSse2 = &quantize_pack__sse2;
#else
constexpr const QuantPackKernel* kSse2 = nullptr;
#endif

// Names as in the XNOR table, so one QCOMPILE_KERNEL value forces both families: avx2 (split
// operands, nibble lookup), portable (POPCNT), reference (the compiler's generic popcount).
// avx512vpopcnt has an AVX-512 kernel for the dense ops only (8 channels a vector, vpopcntq);
// its convolutions run the avx2 kernels. avx2 runs the table-lookup kernel
// (custom_ops/lut/) on the convolutions where it measured faster (LutBeatsAvx2BitSerial;
// QCOMPILE_LUT=0 turns that off), avx2_lut on every convolution it can.
const BitSerialVariant kVariants[] = {
    {{"avx512vpopcnt", "avx512f+avx512vpopcntdq", isa::Avx512Vpopcnt},
     {kAvx2, true, bitserial_conv2d_u64__popcnt, kLutAvx2, lut::kLutWhenFaster,
      lut::LutBeatsAvx2BitSerial},
     kDenseAvx512},
    {{"avx2", "avx2+popcnt", isa::Avx2Popcnt},
     {kAvx2, true, bitserial_conv2d_u64__popcnt, kLutAvx2, lut::kLutWhenFaster,
      lut::LutBeatsAvx2BitSerial},
     kDenseAvx2},
    {{"avx2_lut", "avx2+popcnt", isa::Avx2Popcnt},
     {kAvx2, true, bitserial_conv2d_u64__popcnt, kLutAvx2, lut::kLutAlways, nullptr},
     kDenseAvx2},
    {{"portable", "popcnt", isa::Popcnt},
     {bitserial_conv2d_u64__popcnt, false, nullptr, nullptr, lut::kLutOff, nullptr},
     bitserial_dense_u64__popcnt},
    {{"reference", "", isa::None},
     {bitserial_conv2d_u64__generic, false, nullptr, nullptr, lut::kLutOff, nullptr},
     bitserial_dense_u64__generic},
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
