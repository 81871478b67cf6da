// The depthwise sum kernel of qcompile::DepthwiseConvInteger, one channel at a time; included by
// depthwise_conv.cc (the portable build) and depthwise_conv__avx2.cc (built with -mavx2), which
// compile the same loops for their ISA.
#pragma once

#include <cstdint>
#include <vector>

namespace qcompile {
namespace dw {

// One channel's geometry. The padded input plane is split by row and column phase: phase
// (rp, cp) holds padded rows rp, rp + sh, ... and columns cp, cp + sw, ... as a [Hq, Q] plane
// (plus zeros of slack), so output (oh, ow)'s tap (kh, kw) is element
// (oh + kh dh / sh) Q + ow + kw dw / sw of phase ((kh dh) % sh, (kw dw) % sw): for every tap the
// outputs, taken as one flat [OH, Q] row, read one contiguous run of a phase plane (its start:
// the tap's "run" offset, computed by the op). Only the phases some tap reads are built.
struct Geometry {
  int64_t OH, OW, taps;
  int64_t Hq, Q;  // rows and columns of a phase plane: ceil(padded height / sh), ceil(padded width / sw)
  // acc's length: the flat [OH, Q] outputs rounded up to whole 32-lane steps (no scalar tail)
  int64_t Run() const { return (OH * Q + 31) / 32 * 32; }
  // a plane with the slack that the longest run reads past its last row
  int64_t PlaneSize() const { return Hq * Q + Q + 32; }
};

// acc[oh Q + ow] = sum over taps t of wv[t] * phases[runs[t] + oh Q + ow], i.e. the window's
// sum for ow < OW (columns OW..Q-1 and the rounding to Run() are scratch). phases: int16
// x - x_zero_point, 0 in the padding; wv: the taps' w - w_zero_point. Exact: both factors are
// at most 255 in magnitude, so each product and the sum fit int32.
inline void SumChannel(const Geometry& g, const int64_t* __restrict runs,
                       const int16_t* __restrict phases, const int32_t* __restrict wv,
                       int32_t* __restrict acc) {
  const int64_t n = g.Run();
  for (int64_t i = 0; i < n; ++i) acc[i] = 0;
  for (int64_t t = 0; t < g.taps; ++t) {
    const int16_t* __restrict run = phases + runs[t];
    const int32_t w = wv[t];
    for (int64_t i = 0; i < n; ++i) acc[i] += w * int32_t{run[i]};
  }
}

using SumChannelFn = void (*)(const Geometry&, const int64_t*, const int16_t*, const int32_t*,
                              int32_t*);

// The taps in pairs, as the vector kernels take them (two runs interleaved against one weight
// pair): run(2p), run(2p + 1) and weight(p), w0 in the low and w1 in the high int16 of one int32
// (|w| <= 255 fits int16); an odd count pairs the last tap with itself at weight 0. Tables on the
// stack for kernels up to 7x7, else on the heap.
class TapPairs {
 public:
  TapPairs(const Geometry& g, const int64_t* runs, const int16_t* phases, const int32_t* wv)
      : count_((g.taps + 1) / 2) {
    const bool heap = count_ > kStackPairs;
    if (heap) run_heap_.resize(static_cast<size_t>(2 * count_)), w_heap_.resize(static_cast<size_t>(count_));
    run_ = heap ? run_heap_.data() : run_stack_;
    w_ = heap ? w_heap_.data() : w_stack_;
    for (int64_t t = 0; t < 2 * count_; ++t) run_[t] = phases + runs[t < g.taps ? t : g.taps - 1];
    for (int64_t p = 0; p < count_; ++p) {
      const int32_t w0 = wv[2 * p], w1 = 2 * p + 1 < g.taps ? wv[2 * p + 1] : 0;
      w_[p] = static_cast<int32_t>((static_cast<uint32_t>(w1) << 16) | (static_cast<uint32_t>(w0) & 0xffffu));
    }
  }
  TapPairs(const TapPairs&) = delete;
  TapPairs& operator=(const TapPairs&) = delete;

  int64_t count() const { return count_; }
  const int16_t* run(int64_t t) const { return run_[t]; }
  int32_t weight(int64_t p) const { return w_[p]; }

 private:
  static constexpr int64_t kStackPairs = 25;
  int64_t count_;
  const int16_t* run_stack_[2 * kStackPairs];
  int32_t w_stack_[kStackPairs];
  std::vector<const int16_t*> run_heap_;
  std::vector<int32_t> w_heap_;
  const int16_t** run_ = nullptr;
  int32_t* w_ = nullptr;
};

}  // namespace dw
}  // namespace qcompile
