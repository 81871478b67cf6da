// CPU features, read once when the library is loaded. Kernels never look at these: only the
// variant tables (common/kernel_select.h) do, through the ISA requirements below.
#pragma once

namespace qcompile {

struct CpuFeatures {
  bool popcnt = false;
  bool avx2 = false;
  bool avx512f = false;
  bool avx512vpopcntdq = false;
  bool avx512bw = false;
  bool avx512vnni = false;
  bool amx_int8 = false;  // AMX-TILE and AMX-INT8 (the OS's permission is asked by isa::AmxInt8)
};

const CpuFeatures& Cpu();

// What a variant needs (VariantId::supported): the CPU feature and, for ISA variants, that the
// build compiled it in (QCOMPILE_HAVE_*).
namespace isa {
bool None();            // any CPU
bool Popcnt();          // POPCNT (a non-x86 build: the compiler's generic popcount)
bool Sse2();            // SSE2 (baseline on x86-64; false on other builds)
bool Avx2();            // AVX2
bool Avx2Popcnt();      // AVX2 and POPCNT
bool Avx512Vpopcnt();   // AVX-512F and AVX-512 VPOPCNTDQ
bool Avx512Vnni();      // AVX-512F, BW and VNNI
bool AmxInt8();         // AMX-TILE and AMX-INT8, with the OS's permission to use the tiles
}  // namespace isa

}  // namespace qcompile
