#include "xnor_variants.h"

#include <cstdlib>
#include <cstring>

#include "../common/cpu_features.h"

namespace qcompile {
namespace xnor {
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
constexpr ConvRowFn kAvx2 = xnor_conv2d_u64__avx2;
#else
bool HasAvx2() { return false; }  // not an x86 build
constexpr ConvRowFn kAvx2 = nullptr;
#endif
#ifdef QCOMPILE_HAVE_AVX512
bool HasAvx512Vpopcnt() { return Cpu().avx512f && Cpu().avx512vpopcntdq; }
#else
bool HasAvx512Vpopcnt() { return false; }  // compiler lacks -mavx512vpopcntdq
#endif

#ifdef QCOMPILE_HAVE_AVX512
constexpr ConvRowFn kAvx512 = xnor_conv2d_u64__avx512vpopcnt;
#else
constexpr ConvRowFn kAvx512 = nullptr;
#endif

// Preference order: the first supported variant is the default. On an AMD EPYC (Zen, AVX2)
// avx2 runs 2-2.5x faster than portable on ResNet-18's 3x3 layers (tools/bench_ops.py).
const XnorVariant kVariants[] = {
    {"avx512vpopcnt", "avx512f+avx512vpopcntdq", HasAvx512Vpopcnt, kWeightsBlocked, false, kAvx512},
    {"avx2", "avx2+popcnt", HasAvx2, kWeightsBlockedNibbles, true, kAvx2},
    {"portable", "popcnt", HasPopcnt, kWeightsBlocked, false, xnor_conv2d_u64__portable},
    {"reference", "", Always, kWeightsPlain, false, xnor_conv2d_u64__reference},
};

}  // namespace

const XnorVariant* Variants(size_t* count) {
  *count = sizeof(kVariants) / sizeof(kVariants[0]);
  return kVariants;
}

const XnorVariant* SelectVariant(std::string* error) {
  const char* forced = std::getenv("QCOMPILE_KERNEL");
  if (forced && *forced) {
    std::string names;
    for (const XnorVariant& v : kVariants) {
      if (std::strcmp(v.name, forced) == 0) {
        if (v.supported()) return &v;
        *error = std::string("QCOMPILE_KERNEL=") + forced + " names a kernel variant that this " +
                 "CPU cannot run (needs " + v.isa + "); unset it or pick a supported variant";
        return nullptr;
      }
      names += names.empty() ? "" : ", ";
      names += v.name;
    }
    *error = std::string("QCOMPILE_KERNEL=") + forced +
             " is not a kernel variant; expected one of " + names;
    return nullptr;
  }
  for (const XnorVariant& v : kVariants) {
    if (v.supported()) return &v;
  }
  *error = "no XnorConv kernel variant is supported on this CPU";
  return nullptr;
}

}  // namespace xnor
}  // namespace qcompile
