#include "xnor_variants.h"

#include <chrono>
#include <cstring>

#include "../common/cpu_features.h"

namespace qcompile {
namespace xnor {
namespace {

#ifdef QCOMPILE_HAVE_AVX2
constexpr ConvRowFn kAvx2 = xnor_conv2d_u64__avx2;
constexpr CeilingFn kAvx2Ceiling = xnor_ceiling__avx2;
constexpr lut::LutTileFn kLutAvx2 = lut::lut_conv2d_i8__avx2;
constexpr CeilingFn kLutAvx2Ceiling = lut::lut_ceiling__avx2;
#else
constexpr ConvRowFn kAvx2 = nullptr;
constexpr CeilingFn kAvx2Ceiling = nullptr;
constexpr lut::LutTileFn kLutAvx2 = nullptr;
constexpr CeilingFn kLutAvx2Ceiling = nullptr;
#endif
#ifdef QCOMPILE_HAVE_AVX512
constexpr ConvRowFn kAvx512 = xnor_conv2d_u64__avx512vpopcnt;
constexpr CeilingFn kAvx512Ceiling = xnor_ceiling__avx512vpopcnt;
constexpr ConvRowFn kAvx512Csa = xnor_conv2d_u64__avx512vpopcnt_csa;
constexpr CeilingFn kAvx512CsaCeiling = xnor_ceiling__avx512vpopcnt_csa;
#else
constexpr ConvRowFn kAvx512 = nullptr;
constexpr CeilingFn kAvx512Ceiling = nullptr;
constexpr ConvRowFn kAvx512Csa = nullptr;
constexpr CeilingFn kAvx512CsaCeiling = nullptr;
#endif

#ifdef QCOMPILE_HAVE_SSE2
constexpr ThresholdRowFn kSse2Threshold = xnor_threshold__sse2;
#else
constexpr ThresholdRowFn kSse2Threshold = xnor_threshold__portable;  // not an x86 build
#endif

// Preference order: the first supported variant is the default. On an AMD EPYC (Zen, AVX2)
// avx2 runs 2-2.5x faster than portable on ResNet-18's 3x3 layers (tools/bench_ops.py). The
// portable and reference rows pack XnorConvThreshold's bits with the scalar loop, so it runs
// (and is tested) on x86 too.
// avx512vpopcnt and avx2 run the table-lookup kernel (custom_ops/lut/) on the convolutions where
// it measured faster than their own (lut_kernel.h, LutBeats*; QCOMPILE_LUT=0 turns that off);
// avx2_lut runs it on every convolution it can, so the sweeps test it; avx512vpopcnt_csa (a
// carry-save tree over 8 words per vpopcntq) measured slower than avx512vpopcnt on a Sapphire
// Rapids host, so it comes after it.
using lut::kLutAlways;
using lut::kLutOff;
using lut::kLutWhenFaster;
const XnorVariant kVariants[] = {
    {{"avx512vpopcnt", "avx512f+avx512vpopcntdq", isa::Avx512Vpopcnt},
     {kWeightsBlocked, false, kAvx512, kLutAvx2, kLutWhenFaster, lut::LutBeatsAvx512},
     kAvx512Ceiling, kSse2Threshold},
    {{"avx512vpopcnt_csa", "avx512f+avx512vpopcntdq", isa::Avx512Vpopcnt},
     {kWeightsBlocked, false, kAvx512Csa, nullptr, kLutOff, nullptr}, kAvx512CsaCeiling,
     kSse2Threshold},
    {{"avx2", "avx2+popcnt", isa::Avx2Popcnt},
     {kWeightsBlockedNibbles, true, kAvx2, kLutAvx2, kLutWhenFaster, lut::LutBeatsAvx2},
     kAvx2Ceiling, kSse2Threshold},
    {{"avx2_lut", "avx2+popcnt", isa::Avx2Popcnt},
     {kWeightsBlockedNibbles, true, kAvx2, kLutAvx2, kLutAlways, nullptr}, kLutAvx2Ceiling,
     kSse2Threshold},
    {{"portable", "popcnt", isa::Popcnt},
     {kWeightsBlocked, false, xnor_conv2d_u64__portable, nullptr, kLutOff, nullptr},
     xnor_ceiling__portable, xnor_threshold__portable},
    {{"reference", "", isa::None},
     {kWeightsPlain, false, xnor_conv2d_u64__reference, nullptr, kLutOff, nullptr}, nullptr,
     xnor_threshold__portable},
};
constexpr VariantTable<XnorVariant> kTable{kVariants, sizeof(kVariants) / sizeof(kVariants[0]),
                                           "QCOMPILE_KERNEL"};

}  // namespace

const VariantTable<XnorVariant>& Variants() { return kTable; }

double PopcountCeiling(const char* name, double seconds) {
  if (!name) return 0.0;
  const XnorVariant* v = nullptr;
  for (const XnorVariant& c : kVariants)
    if (std::strcmp(c.id.name, name) == 0) v = &c;
  if (!v || !v->ceiling || !v->id.supported()) return 0.0;
  if (!(seconds > 0.0)) seconds = 0.5;
  if (seconds > 60.0) seconds = 60.0;
  using Clock = std::chrono::steady_clock;
  auto run = [v](int64_t iters, double* secs) {
    const Clock::time_point t0 = Clock::now();
    const int64_t macs = v->ceiling(iters);
    *secs = std::chrono::duration<double>(Clock::now() - t0).count();
    return static_cast<double>(macs);
  };
  // Grow the batch to about 1/20 of the time, then keep the best of the batches: the best is
  // the machine's rate with the least interference from other processes.
  double secs = 0.0;
  int64_t iters = 64;
  run(iters, &secs);
  while (secs < seconds / 20 && iters < (int64_t{1} << 40)) {
    iters *= 2;
    run(iters, &secs);
  }
  double best = 0.0, spent = 0.0;
  do {
    const double macs = run(iters, &secs);
    spent += secs;
    if (secs > 0.0 && macs / secs > best) best = macs / secs;
  } while (spent < seconds);
  return best;
}

}  // namespace xnor
}  // namespace qcompile
