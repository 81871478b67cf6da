// The packed-convolution core's data (custom_ops/packed_conv/): geometry (a dense layer is a 1x1
// convolution of a 1x1 image), the split activation layout, the weight layouts and the arguments
// of the binary row kernels. Shared by the XNOR and bit-serial families.
//
// This header is included by the ISA translation units (compiled with -mavx2 / -mavx512*), so
// it holds only plain data and declarations: no inline code that the linker could merge with a
// copy built for another ISA (InteriorColumns is integer-only and ISA-neutral).
#pragma once

#include <cstdint>

namespace qcompile {
namespace packed {

// Output channels per block of the blocked weight layout and of the fast kernels.
constexpr int64_t kBlockM = 8;

// Shapes and attributes, validated by the op (packed_conv/check_geometry.cc) before any kernel runs.
struct ConvGeometry {
  int64_t N, H, W;
  int64_t XW;  // words per input pixel: G * Wg
  int64_t G, Cg, Wg;
  int64_t M, Mg;
  int64_t KH, KW;
  int64_t sh, sw, pt, pl, dh, dw;
  int64_t OH, OW;
  int64_t blocks_per_group;  // ceil(Mg / kBlockM)
};

// Output columns whose horizontal window is wholly inside the image, [*ow_a, *ow_b): 0 <= iw0
// and iw0 + (KW-1)*dw <= W-1 with iw0 = ow*sw - pl. The row kernels treat the others as edges.
inline void InteriorColumns(const ConvGeometry& s, int64_t* ow_a, int64_t* ow_b) {
  int64_t a = (s.pl + s.sw - 1) / s.sw;
  const int64_t last = s.W - 1 - (s.KW - 1) * s.dw + s.pl;
  int64_t b = last < 0 ? 0 : last / s.sw + 1;
  if (a > s.OW) a = s.OW;
  if (b > s.OW) b = s.OW;
  if (b < a) b = a;
  *ow_a = a;
  *ow_b = b;
}

// The split activation layout (BitSerialArgs::xs), for kernels that put neighbouring output
// pixels in the lanes of a vector (bitserial_conv2d_u64__avx2). With padded coordinates hp = ih + pt, wp = iw + pl, column wp lives
// in phase r = wp % sw at position q = wp / sw, so output pixel ow's tap kw reads phase
// (kw*dw) % sw at q = ow + (kw*dw) / sw: consecutive output pixels, consecutive words.
//   xs[((((n*Hp + hp)*sw + r)*XW + word)*2 + half)*Wq + q]
//     = (x[n, hp-pt, q*sw+r-pl, word] >> 4*half) & kLowNibbles, or 0 outside the image.
// Hp and Wq cover every tap of output rows [0, OH) and columns [0, OW).
constexpr int64_t kLanes = 4;  // output pixels per vector in the split-layout kernels

struct SplitLayout {
  int64_t Hp, Wq;
  int64_t words;        // N * Hp * sw * XW * 2 * Wq
  int64_t word_step;    // 2 * Wq: between words of a pixel (the high nibbles sit Wq after)
  int64_t phase_step;   // XW * word_step: between phases of a padded row
  // [KH*KW*Wg]: step t = (kh*KW + kw)*Wg + k of a window reads words at x_step[t] from the
  // window's first row and column: kh*dh*sw*phase_step + ((kw*dw) % sw)*phase_step
  // + (kw*dw) / sw + k*word_step.
  const int64_t* x_step = nullptr;
  int64_t steps;  // KH*KW*Wg
};

struct ConvArgs {
  ConvGeometry geo;
  const uint64_t* x;  // [N, H, W, G*Wg]
  const uint64_t* w;  // [M, KH, KW, Wg] as given (reference kernel)
  // Blocked weights (fast kernels): block b of group g holds output channels
  // g*Mg + b*8 + j (j < 8) as [KH][KW][Wg][8]; channels past Mg are zero words. In the nibble
  // layout (kWeightsBlockedNibbles) each [8] becomes [2][8]: w & 0x0f0f.., then (w >> 4) & 0x0f0f..
  const uint64_t* wb;
  // Activations split into nibbles (variants with split_x): [N, H, W, G*Wg][2] holding
  // x & 0x0f0f.. and (x >> 4) & 0x0f0f.. of each word of x.
  const uint64_t* xs;
  const float* scale;  // [M]
  const float* bias;   // [M]
  float* y;            // [N, M, OH, OW]: float(D) * scale + bias, when d is null
  int32_t* d = nullptr;  // [N, M, OH, OW]: D itself instead (XnorConvThreshold)
  // Tap concatenation (packed_conv/tap_concat_plan.cc): `geo` is then the concatenated convolution (KW = 1, no
  // horizontal padding), whose D counts a padded tap as if its activation bits were 0. Output
  // columns ow < edge_a and ow >= edge_b had such taps; for them the kernel adds
  //   edge_corr[(e*M + m)*(KH+1) + rh.hi] - edge_corr[(e*M + m)*(KH+1) + rh.lo]
  // to D (prefix sums over kernel rows; e = ow for ow < edge_a, else edge_a + ow - edge_b;
  // [rh.lo, rh.hi) the in-bounds kernel rows). Null: no correction (edge_a = 0, edge_b = OW).
  const int32_t* edge_corr = nullptr;
  int64_t edge_a = 0, edge_b = 0;
};

SplitLayout MakeSplitLayout(const ConvGeometry& s);
// x_step for MakeSplitLayout's layout: l.steps entries into out.
void SplitSteps(const ConvGeometry& s, const SplitLayout& l, int64_t* out);
// Fills xs (l.words words) from x [N, H, W, XW].
void SplitActivations(const ConvGeometry& s, const SplitLayout& l, const uint64_t* x,
                      uint64_t* xs);

enum WeightLayout { kWeightsPlain, kWeightsBlocked, kWeightsBlockedNibbles };

constexpr uint64_t kLowNibbles = 0x0f0f0f0f0f0f0f0full;


// Computes y (or d) [n, m, oh, 0:OW] for the output channels m of blocks [b0, b1) of group g.
using ConvRowFn = void (*)(const ConvArgs& a, int64_t n, int64_t g, int64_t b0, int64_t b1,
                           int64_t oh);

// Bit-plane operands (BitSerialConv / BitSerialGemm; custom_ops/SPEC.md, "Multi-bit operands").
constexpr int64_t kMaxPlanes = 16;

struct BitSerialArgs {
  ConvGeometry geo;  // XW = G*P*Wg words per input pixel; W rows hold Q*Wg words per tap
  int64_t P, Q;
  int64_t act_coeffs[kMaxPlanes];
  int64_t weight_coeffs[kMaxPlanes];
  int64_t weight_offset;
  const uint64_t* x;  // [N, H, W, G*P*Wg]
  const uint64_t* w;  // [M, KH, KW, Q*Wg]
  const float* scale;
  const float* bias;
  float* y;  // [N, M, OH, OW]
  // Split kernels (PlaneKernel::split): W in kWeightsBlockedNibbles, plane-major, with
  // KH*KW*Q*Wg words per channel, and X in the split layout (XW = G*P*Wg words per pixel).
  const uint64_t* wb = nullptr;
  const uint64_t* xs = nullptr;
  const SplitLayout* split = nullptr;
};

// y[n, m, oh, :] for m in [m0, m1), a range of whole 8-channel blocks of one group (the last
// block of a group may be partial).
using BitSerialRowFn = void (*)(const BitSerialArgs&, int64_t n, int64_t m0, int64_t m1,
                                int64_t oh);

}  // namespace packed
}  // namespace qcompile
