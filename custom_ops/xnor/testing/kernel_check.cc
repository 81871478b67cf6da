// Checks one fast XnorConv kernel against xnor_conv2d_u64__reference on random geometries
// (groups, channel counts around the 64-bit word, kernels, strides, dilations, asymmetric pads).
// Built by tests/test_ops_kernels_emulated.py with -DKERNEL=<function> -DLAYOUT=<WeightLayout>
// -DSPLIT_X=<0|1>; used for the AVX-512 kernel with the scalar intrinsics of avx512_emulation/.
#include <cstdio>
#include <random>
#include <vector>

#include "../xnor_kernel.h"

using namespace qcompile::xnor;

int main() {
  std::mt19937_64 rng(20240607);
  auto pick = [&](int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(rng() % static_cast<uint64_t>(hi - lo + 1));
  };
  int cases = 0, mismatches = 0;
  for (int it = 0; it < 3000; ++it) {
    ConvGeometry s{};
    s.G = pick(1, 3);
    s.Cg = pick(1, 140);
    s.Wg = (s.Cg + 63) / 64;
    s.XW = s.G * s.Wg;
    s.Mg = pick(1, 20);
    s.M = s.Mg * s.G;
    s.N = pick(1, 2);
    s.H = pick(1, 9);
    s.W = pick(1, 11);
    s.KH = pick(1, 5);
    s.KW = pick(1, 5);
    s.sh = pick(1, 2);
    s.sw = pick(1, 3);
    s.dh = pick(1, 2);
    s.dw = pick(1, 2);
    s.pt = pick(0, 3);
    s.pl = pick(0, 3);
    const int64_t pb = pick(0, 3), pr = pick(0, 3);
    const int64_t eh = s.H + s.pt + pb - s.dh * (s.KH - 1) - 1;
    const int64_t ew = s.W + s.pl + pr - s.dw * (s.KW - 1) - 1;
    if (eh < 0 || ew < 0) continue;
    s.OH = eh / s.sh + 1;
    s.OW = ew / s.sw + 1;
    s.blocks_per_group = (s.Mg + kBlockM - 1) / kBlockM;

    // Unused high bits of each group's last word are 0, as the SPEC requires.
    auto word_mask = [&](int64_t k) {
      const int64_t bits = s.Cg - 64 * k;
      return bits >= 64 ? ~uint64_t{0} : ((uint64_t{1} << bits) - 1);
    };
    std::vector<uint64_t> x(s.N * s.H * s.W * s.XW), w(s.M * s.KH * s.KW * s.Wg);
    for (size_t i = 0; i < x.size(); ++i) x[i] = rng() & word_mask((i % s.XW) % s.Wg);
    for (size_t i = 0; i < w.size(); ++i) w[i] = rng() & word_mask(i % s.Wg);

    const int64_t taps = s.KH * s.KW * s.Wg;
    const bool nib = LAYOUT == kWeightsBlockedNibbles;
    const int64_t per_tap = kBlockM * (nib ? 2 : 1);
    std::vector<uint64_t> wb(s.G * s.blocks_per_group * taps * per_tap, 0);
    for (int64_t m = 0; m < s.M; ++m) {
      const int64_t g = m / s.Mg, b = (m % s.Mg) / kBlockM, j = (m % s.Mg) % kBlockM;
      for (int64_t t = 0; t < taps; ++t) {
        uint64_t* dst = &wb[((g * s.blocks_per_group + b) * taps + t) * per_tap + j];
        const uint64_t v = w[m * taps + t];
        if (nib) {
          dst[0] = v & kLowNibbles;
          dst[kBlockM] = (v >> 4) & kLowNibbles;
        } else {
          dst[0] = v;
        }
      }
    }
    std::vector<uint64_t> xs(2 * x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      xs[2 * i] = x[i] & kLowNibbles;
      xs[2 * i + 1] = (x[i] >> 4) & kLowNibbles;
    }
    std::vector<float> scale(s.M), bias(s.M), y_ref(s.N * s.M * s.OH * s.OW), y(y_ref.size());
    for (int64_t m = 0; m < s.M; ++m) {
      scale[m] = 0.5f + static_cast<float>(m);
      bias[m] = -0.25f * static_cast<float>(m);
    }
    ConvArgs ref{s, x.data(), w.data(), nullptr, nullptr, scale.data(), bias.data(), y_ref.data()};
    ConvArgs fast{s, x.data(), w.data(), wb.data(), SPLIT_X ? xs.data() : nullptr,
                  scale.data(), bias.data(), y.data()};
    // The D output path too (XnorConvThreshold): ConvArgs::d instead of the affine.
    std::vector<int32_t> d_ref(y_ref.size()), d(y_ref.size());
    ConvArgs ref_d = ref, fast_d = fast;
    ref_d.d = d_ref.data();
    fast_d.d = d.data();
    for (int64_t n = 0; n < s.N; ++n)
      for (int64_t g = 0; g < s.G; ++g)
        for (int64_t oh = 0; oh < s.OH; ++oh) {
          xnor_conv2d_u64__reference(ref, n, g, 0, s.blocks_per_group, oh);
          KERNEL(fast, n, g, 0, s.blocks_per_group, oh);
          xnor_conv2d_u64__reference(ref_d, n, g, 0, s.blocks_per_group, oh);
          KERNEL(fast_d, n, g, 0, s.blocks_per_group, oh);
        }
    ++cases;
    if (y != y_ref || d != d_ref) ++mismatches;
  }
  std::printf("%d cases, %d mismatches\n", cases, mismatches);
  return mismatches != 0 || cases < 1000;
}
