#include "xnor_variants.h"

#include <chrono>
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
constexpr CeilingFn kAvx2Ceiling = xnor_ceiling__avx2;
constexpr bitserial::BitSerialRowFn kAvx2BitSerial = bitserial::bitserial_conv2d_u64__avx2;
constexpr lut::LutTileFn kLutAvx2 = lut::lut_conv2d_i8__avx2;
constexpr CeilingFn kLutAvx2Ceiling = lut::lut_ceiling__avx2;
#else
bool HasAvx2() { return false; }  // not an x86 build
constexpr ConvRowFn kAvx2 = nullptr;
constexpr CeilingFn kAvx2Ceiling = nullptr;
constexpr bitserial::BitSerialRowFn kAvx2BitSerial = nullptr;
constexpr lut::LutTileFn kLutAvx2 = nullptr;
constexpr CeilingFn kLutAvx2Ceiling = nullptr;
#endif
#ifdef QCOMPILE_HAVE_AVX512
bool HasAvx512Vpopcnt() { return Cpu().avx512f && Cpu().avx512vpopcntdq; }
#else
bool HasAvx512Vpopcnt() { return false; }  // compiler lacks -mavx512vpopcntdq
#endif

#ifdef QCOMPILE_HAVE_AVX512
constexpr ConvRowFn kAvx512 = xnor_conv2d_u64__avx512vpopcnt;
constexpr CeilingFn kAvx512Ceiling = xnor_ceiling__avx512vpopcnt;
constexpr ConvRowFn kAvx512Csa = xnor_conv2d_u64__avx512vpopcnt_csa;
constexpr CeilingFn kAvx512CsaCeiling = xnor_ceiling__avx512vpopcnt_csa;
#else
constexpr ConvRowFn kAvx512Csa = nullptr;
constexpr CeilingFn kAvx512CsaCeiling = nullptr;
constexpr ConvRowFn kAvx512 = nullptr;
constexpr CeilingFn kAvx512Ceiling = nullptr;
#endif

// Preference order: the first supported variant is the default. On an AMD EPYC (Zen, AVX2)
// avx2 runs 2-2.5x faster than portable on ResNet-18's 3x3 layers (tools/bench_ops.py).
// BitSerialConv has no AVX-512 kernel yet: that row runs the POPCNT one.
using bitserial::bitserial_conv2d_u64__generic;
using bitserial::bitserial_conv2d_u64__popcnt;
// avx512vpopcnt and avx2 run the table-lookup kernel on the geometries where it measured
// faster than their own (lut_kernel.h, LutBeats*; QCOMPILE_LUT=0 turns that off for A/B
// timing); avx2_lut runs it on every convolution it can, so the sweeps test it.
using lut::kLutAlways;
using lut::kLutOff;
using lut::kLutWhenFaster;
const XnorVariant kVariants[] = {
    {"avx512vpopcnt", "avx512f+avx512vpopcntdq", HasAvx512Vpopcnt, kWeightsBlocked, false, kAvx512,
     kAvx512Ceiling, bitserial_conv2d_u64__popcnt, false, kLutAvx2, kLutWhenFaster,
     lut::LutBeatsAvx512, lut::LutBeatsPopcnt},
    {"avx512vpopcnt_csa", "avx512f+avx512vpopcntdq", HasAvx512Vpopcnt, kWeightsBlocked, false,
     kAvx512Csa, kAvx512CsaCeiling, bitserial_conv2d_u64__popcnt, false, nullptr, kLutOff, nullptr,
     nullptr},
    {"avx2", "avx2+popcnt", HasAvx2, kWeightsBlockedNibbles, true, kAvx2, kAvx2Ceiling,
     kAvx2BitSerial, true, kLutAvx2, kLutWhenFaster, lut::LutBeatsAvx2,
     lut::LutBeatsAvx2BitSerial},
    {"avx2_lut", "avx2+popcnt", HasAvx2, kWeightsBlockedNibbles, true, kAvx2, kLutAvx2Ceiling,
     kAvx2BitSerial, true, kLutAvx2, kLutAlways, nullptr, nullptr},
    {"portable", "popcnt", HasPopcnt, kWeightsBlocked, false, xnor_conv2d_u64__portable,
     xnor_ceiling__portable, bitserial_conv2d_u64__popcnt, false, nullptr, kLutOff, nullptr,
     nullptr},
    {"reference", "", Always, kWeightsPlain, false, xnor_conv2d_u64__reference, nullptr,
     bitserial_conv2d_u64__generic, false, nullptr, kLutOff, nullptr, nullptr},
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

double PopcountCeiling(const char* name, double seconds) {
  if (!name) return 0.0;
  const XnorVariant* v = nullptr;
  for (const XnorVariant& c : kVariants)
    if (std::strcmp(c.name, name) == 0) v = &c;
  if (!v || !v->ceiling || !v->supported()) return 0.0;
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
