// xnor_conv2d_u64__portable: bit-packed, 64-bit popcount (__builtin_popcountll; built with
// -mpopcnt on x86-64 so it is one instruction), 8 output channels per pass so each activation
// word is loaded once for 8 weight words.
#include "../packed_conv/conv_row.h"
#include "xnor_kernel.h"

namespace qcompile {
namespace xnor {
namespace {

struct PortableDot {
  static constexpr int64_t kXWords = 1, kWWords = 1;
  static constexpr int64_t kTile = 1;  // 8 scalar accumulators already fill the registers

  static inline void Run(const Window& win, int64_t base, const uint64_t* wblock,
                         int64_t sums[kBlockM]) {
    uint64_t acc[kBlockM] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t kh = win.rh.lo; kh < win.rh.hi; ++kh) {
      const uint64_t* wrow = wblock + kh * win.KW * win.Wg * kBlockM;
      for (int64_t kw = win.rw.lo; kw < win.rw.hi; ++kw) {
        const uint64_t* xp = win.x + (base + kh * win.row_step + kw * win.col_step);
        const uint64_t* wp = wrow + kw * win.Wg * kBlockM;
        for (int64_t k = 0; k < win.Wg; ++k) {
          const uint64_t xv = xp[k];
          const uint64_t* wk = wp + k * kBlockM;
          for (int j = 0; j < kBlockM; ++j) acc[j] += __builtin_popcountll(xv ^ wk[j]);
        }
      }
    }
    for (int j = 0; j < kBlockM; ++j) sums[j] = static_cast<int64_t>(acc[j]);
  }
};

}  // namespace

void xnor_conv2d_u64__portable(const ConvArgs& a, int64_t n, int64_t g, int64_t b0, int64_t b1,
                               int64_t oh) {
  ConvRowBlocked<PortableDot>(a, n, g, b0, b1, oh);
}

// The ceiling: PortableDot::Run, 1 pixel x 8 channels.
int64_t xnor_ceiling__portable(int64_t iters) {
  return PopcountCeilingLoop<PortableDot, false, 4>(iters);
}

}  // namespace xnor
}  // namespace qcompile
