#include "bitserial_variants.h"

#include "../common/cpu_features.h"
#include "bitserial_kernel.h"

namespace qcompile {
namespace bitserial {
namespace {

bool Always() { return true; }
bool HasPopcnt() {
#if defined(__x86_64__) || defined(__i386__)
  return Cpu().popcnt;
#else
  return true;  // built without x86 flags: the compiler's generic popcount
#endif
}
#ifdef QCOMPILE_HAVE_AVX2
bool HasAvx2() { return Cpu().avx2 && Cpu().popcnt; }
constexpr BitSerialRowFn kAvx2 = bitserial_conv2d_u64__avx2;
#else
bool HasAvx2() { return false; }  // not an x86 build
constexpr BitSerialRowFn kAvx2 = nullptr;
#endif
#ifdef QCOMPILE_HAVE_SSE2
bool HasSse2() { return true; }  // baseline on x86-64
constexpr const QuantPackKernel* kSse2 = &quantize_pack__sse2;
#else
bool HasSse2() { return false; }
constexpr const QuantPackKernel* kSse2 = nullptr;
#endif

// Names as in the XNOR table, so one QCOMPILE_KERNEL value forces both families: avx2 (split
// operands, nibble lookup), portable (POPCNT), reference (the compiler's generic popcount).
// There is no AVX-512 bit-plane kernel yet.
const BitSerialVariant kVariants[] = {
    {{"avx2", "avx2+popcnt", HasAvx2}, {kAvx2, true, bitserial_conv2d_u64__popcnt}},
    {{"portable", "popcnt", HasPopcnt}, {bitserial_conv2d_u64__popcnt, false, nullptr}},
    {{"reference", "", Always}, {bitserial_conv2d_u64__generic, false, nullptr}},
};

const QuantizePackVariant kQuantizeVariants[] = {
    {{"sse2", "sse2", HasSse2}, kSse2},
    {{"portable", "", Always}, &quantize_pack__portable},
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
