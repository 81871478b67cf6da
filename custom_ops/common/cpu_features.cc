#include "cpu_features.h"

#if defined(QCOMPILE_HAVE_AMX) && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace qcompile {
namespace {

#if defined(QCOMPILE_HAVE_AMX) && defined(__linux__)
constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;  // asm/prctl.h, the XTILEDATA bit
#endif

CpuFeatures Detect() {
  CpuFeatures f;
#if defined(__x86_64__) || defined(__i386__)
  // __builtin_cpu_supports also checks that the OS saves the AVX / AVX-512 register state.
  __builtin_cpu_init();
  f.popcnt = __builtin_cpu_supports("popcnt");
  f.avx2 = __builtin_cpu_supports("avx2");
  f.avx512f = __builtin_cpu_supports("avx512f");
  f.avx512vpopcntdq = __builtin_cpu_supports("avx512vpopcntdq");
  f.avx512bw = __builtin_cpu_supports("avx512bw");
  f.avx512vnni = __builtin_cpu_supports("avx512vnni");
  f.amx_int8 = __builtin_cpu_supports("amx-tile") && __builtin_cpu_supports("amx-int8");
#endif
  return f;
}

// Initialised when the shared library is loaded.
const CpuFeatures kCpu = Detect();

}  // namespace

const CpuFeatures& Cpu() { return kCpu; }

namespace isa {

bool None() { return true; }

bool Popcnt() {
#if defined(__x86_64__) || defined(__i386__)
  return kCpu.popcnt;
#else
  return true;
#endif
}

bool Sse2() {
#ifdef QCOMPILE_HAVE_SSE2
  return true;
#else
  return false;
#endif
}

bool Avx2() {
#ifdef QCOMPILE_HAVE_AVX2
  return kCpu.avx2;
#else
  return false;  // not an x86 build
#endif
}

bool Avx2Popcnt() { return Avx2() && kCpu.popcnt; }

bool Avx512Vpopcnt() {
#ifdef QCOMPILE_HAVE_AVX512
  return kCpu.avx512f && kCpu.avx512vpopcntdq;
#else
  return false;  // compiler lacks -mavx512vpopcntdq
#endif
}

bool Avx512Vnni() {
#ifdef QCOMPILE_HAVE_AVX512VNNI
  return kCpu.avx512f && kCpu.avx512bw && kCpu.avx512vnni;
#else
  return false;  // compiler lacks -mavx512vnni
#endif
}

bool AmxInt8() {
#if defined(QCOMPILE_HAVE_AMX) && defined(__linux__)
  // Linux hands out the 8 KB tile state only to a process that asks (once, for all threads).
  static const bool granted = kCpu.amx_int8 && syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  return granted;
#else
  return false;  // no AMX in this build, or an OS without the permission call
#endif
}

}  // namespace isa

}  // namespace qcompile
