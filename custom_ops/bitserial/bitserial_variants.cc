#include "bitserial_variants.h"

#include "../common/cpu_features.h"
#include "bitserial_kernel.h"

namespace qcompile {
namespace bitserial {
namespace {

#ifdef QCOMPILE_HAVE_AVX2
constexpr BitSerialRowFn kAvx2 = bitserial_conv2d_u64__avx2;
#else
constexpr BitSerialRowFn kAvx2 = nullptr;
#endif
#ifdef QCOMPILE_HAVE_SSE2
constexpr const QuantPackKernel* kSse2 = &quantize_pack__sse2;
#else
constexpr const QuantPackKernel* kSse2 = nullptr;
#endif

// Names as in the XNOR table, so one QCOMPILE_KERNEL value forces both families: avx2 (split
// operands, nibble lookup), portable (POPCNT), reference (the compiler's generic popcount).
// There is no AVX-512 bit-plane kernel yet.
const BitSerialVariant kVariants[] = {
    {{"avx2", "avx2+popcnt", isa::Avx2Popcnt}, {kAvx2, true, bitserial_conv2d_u64__popcnt}},
    {{"portable", "popcnt", isa::Popcnt}, {bitserial_conv2d_u64__popcnt, false, nullptr}},
    {{"reference", "", isa::None}, {bitserial_conv2d_u64__generic, false, nullptr}},
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
