// CPU features, read once when the library is loaded. Kernels never look at these: only the
// variant table (xnor/xnor_variants.cc) does.
#pragma once

namespace qcompile {

struct CpuFeatures {
  bool popcnt = false;
  bool avx2 = false;
  bool avx512f = false;
  bool avx512vpopcntdq = false;
};

const CpuFeatures& Cpu();

}  // namespace qcompile
