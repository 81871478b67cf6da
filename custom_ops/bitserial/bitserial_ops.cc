#include "bitserial_ops.h"
#include "../common/quant_attrs.h"
#include "../xnor/tap_concat.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif


namespace qcompile {
namespace {

// Output-channel blocks (8 channels) per parallel task.
constexpr int64_t kChunkBlocks = 2;

}  // namespace

// W [M, taps, Q*Wg] reordered plane-major, [M, Q, taps, Wg], then nibble-blocked: what the
// split kernels read (bitserial_avx2.cc).
std::vector<uint64_t> PlaneMajorWeights(const uint64_t* w, int64_t M, int64_t G, int64_t taps,
                                        int64_t Q, int64_t Wg) {
  std::vector<uint64_t> pm(static_cast<size_t>(M * taps * Q * Wg));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t t = 0; t < taps; ++t)
      for (int64_t q = 0; q < Q; ++q)
        for (int64_t k = 0; k < Wg; ++k)
          pm[((m * Q + q) * taps + t) * Wg + k] = w[((m * taps + t) * Q + q) * Wg + k];
  return LayoutWeights(xnor::kWeightsBlockedNibbles, pm.data(), M, G, taps * Q * Wg);
}

namespace {

// Constant W laid out once, plane-major (PlaneMajorWeights), for variants with bitserial_split.
void PrepareWeights(const OrtKernelInfo* info, const xnor::XnorVariant* v, int64_t group,
                    int64_t Q, ConstWeights* cw) {
  if (!v || !v->bitserial_split) return;
  const uint64_t* wdata = nullptr;
  std::vector<int64_t> ws;
  if (!ConstantInput(info, 1, &wdata, &ws)) return;
  // Compute checks the shape; only a shape it can accept is laid out here.
  if ((ws.size() != 2 && ws.size() != 4) || ws[0] < 1 || ws[0] % group != 0) return;
  if (ws.back() < Q || ws.back() % Q != 0) return;
  const int64_t taps = ws.size() == 4 ? ws[1] * ws[2] : 1;
  cw->src = wdata;
  cw->shape = ws;
  cw->laid_out = PlaneMajorWeights(cw->src, ws[0], group, taps, Q, ws.back() / Q);
}

// ---------------------------------------------------------------------------- tap concatenation
// Small channel counts leave most of a word as pad bits (16 channels: 48 of 64). For stride-1,
// dilation-1 convolutions on the split (AND) kernels, the KW taps of a kernel row are
// concatenated into one bit vector of KW*Cg bits: activation pixel ow of the new image holds
// the channels of input columns ow-pl .. ow-pl+KW-1 (zero outside the image), the weights of
// (kh, kw) land at bit kw*Cg, and the convolution becomes KH x 1 with no horizontal padding
// over ceil(KW*Cg/64) words instead of KW*ceil(Cg/64). AND of zero bits adds nothing, so D is
// unchanged: only valid bits are moved (masked), and the path is taken only when W's pad bits
// are zero and X's are too (else popcount(A & W) or weight_offset * popcount(A) could see them).

bool TapConcatApplies(const xnor::ConvGeometry& s) {
  return s.sw == 1 && s.dw == 1 && s.KW > 1 && Words(s.KW * s.Cg) < s.KW * s.Wg;
}


// Constant W in the tap-concatenated, plane-major, nibble-blocked layout (for BitSerialConv on
// variants with bitserial_split), when the convolution qualifies and W has no pad bit set.
void PrepareTapConcatWeights(const OrtKernelInfo* info, const xnor::XnorVariant* v,
                             const ConvAttrs& at, int64_t Q, ConstWeights* cw) {
  if (!v || !v->bitserial_split) return;
  const uint64_t* wdata = nullptr;
  std::vector<int64_t> ws;
  if (!ConstantInput(info, 1, &wdata, &ws)) return;
  xnor::ConvGeometry s = tapconcat::AttrGeometry(at);
  if (ws.size() != 4 || ws[0] < 1 || ws[0] % s.G != 0 || ws[1] != s.KH || ws[2] != s.KW ||
      ws[3] != Q * s.Wg || !TapConcatApplies(s))
    return;
  s.M = ws[0];
  std::vector<uint64_t> w2;
  if (!tapconcat::ConcatWeights(s, Q, wdata, &w2)) return;
  cw->src = wdata;
  cw->shape = ws;
  cw->laid_out = PlaneMajorWeights(w2.data(), s.M, s.G, s.KH, Q, Words(s.KW * s.Cg));
}

// Runs `fn` over (batch x group x 16-channel chunk x output row) tasks on ORT's intra-op pool.
void RunTasks(OrtKernelContext* ctx, bitserial::BitSerialRowFn fn, const bitserial::BitSerialArgs& a) {
  const xnor::ConvGeometry& s = a.geo;
  const int64_t chunks = (s.blocks_per_group + kChunkBlocks - 1) / kChunkBlocks;
  ParallelFor(ctx, static_cast<size_t>(s.N * s.G * chunks * s.OH), [&](size_t i) {
    int64_t t = static_cast<int64_t>(i);
    const int64_t oh = t % s.OH;
    t /= s.OH;
    const int64_t c = t % chunks;
    t /= chunks;
    const int64_t g = t % s.G;
    const int64_t n = t / s.G;
    const int64_t m0 = g * s.Mg + c * kChunkBlocks * xnor::kBlockM;
    const int64_t m1 = std::min(m0 + kChunkBlocks * xnor::kBlockM, (g + 1) * s.Mg);
    fn(a, n, m0, m1, oh);
  });
}

// The split kernel on a.x with weights `wb` (plane-major, nibble-blocked; laid out here from
// a.w when null); false, having run nothing, when the padded split copy would be huge.
bool RunSplit(OrtKernelContext* ctx, const xnor::XnorVariant& v, bitserial::BitSerialArgs a,
              const uint64_t* wb) {
  const xnor::ConvGeometry& s = a.geo;
  xnor::SplitLayout layout = xnor::MakeSplitLayout(s);
  // Huge pads would make the padded copy huge: such calls take the POPCNT kernel.
  if (layout.words > 4 * s.N * s.H * s.W * s.XW + (int64_t{1} << 22) ||
      layout.steps > (int64_t{1} << 20))
    return false;
  std::vector<uint64_t> blocked, split;
  if (!wb) {
    blocked = PlaneMajorWeights(a.w, s.M, s.G, s.KH * s.KW, a.Q, s.Wg);
    wb = blocked.data();
  }
  a.wb = wb;
  std::vector<int64_t> x_step(static_cast<size_t>(layout.steps));
  xnor::SplitSteps(s, layout, x_step.data());
  layout.x_step = x_step.data();
  split.resize(static_cast<size_t>(layout.words));
  xnor::SplitActivations(s, layout, a.x, split.data());
  a.xs = split.data();
  a.split = &layout;
  RunTasks(ctx, v.bitserial, a);
  return true;
}

// Runs the variant's BitSerialConv kernel, after laying out X and W for it when it reads split
// operands (tap-concatenated when that applies: `concat` holds W so laid out when constant);
// or the variant's table-lookup kernel when `lut` (the op's setting) chooses it and the planes
// fit it (<= 4 activation planes, int8 table entries).
void RunBitSerial(OrtKernelContext* ctx, const xnor::XnorVariant& v, bitserial::BitSerialArgs a,
                  const ConstWeights* prepared, const ConstWeights* concat = nullptr,
                  const LutState* lut = nullptr) {
  xnor::ConvGeometry& s = a.geo;
  s.blocks_per_group = (s.Mg + xnor::kBlockM - 1) / xnor::kBlockM;
  if (lut && v.lut && lut::LutChosen(lut->use, v.lut_bitserial_faster, s, a.P)) {
    const lut::LutOperands o{a.P, a.Q, a.act_coeffs, a.weight_coeffs, a.weight_offset};
    lut::LutTables scratch;
    const lut::LutTables* t = lut->cache->Get(s, o, a.w, prepared != nullptr, &scratch);
    if (t && lut::RunLut(ctx, v.lut, s, a.P, *t, a.x, a.scale, a.bias, a.y, nullptr)) return;
  }
  if (v.bitserial_split) {
    if (TapConcatApplies(s)) {
      std::vector<uint64_t> w2, w2_blocked, x2;
      const uint64_t* wb = concat ? concat->laid_out.data() : nullptr;
      if (!wb && tapconcat::ConcatWeights(s, a.Q, a.w, &w2)) {
        w2_blocked = PlaneMajorWeights(w2.data(), s.M, s.G, s.KH, a.Q, Words(s.KW * s.Cg));
        wb = w2_blocked.data();
      }
      if (wb) x2.resize(static_cast<size_t>(s.N * s.H * s.OW * s.G * a.P * Words(s.KW * s.Cg)));
      if (wb && tapconcat::ConcatActivations(s, s.G * a.P, a.x, x2.data())) {
        bitserial::BitSerialArgs c = a;
        c.geo = tapconcat::ConcatGeometry(s, s.G * a.P);
        c.x = x2.data();
        if (RunSplit(ctx, v, c, wb)) return;
      }
    }
    if (RunSplit(ctx, v, a, prepared ? prepared->laid_out.data() : nullptr)) return;
    RunTasks(ctx, bitserial::bitserial_conv2d_u64__popcnt, a);
    return;
  }
  RunTasks(ctx, v.bitserial, a);
}

// Round half to even without a libm call (std::nearbyint is one on baseline x86-64, ~10 ns):
// adding 2^23 moves |v| to where the float spacing is 1, so the addition itself rounds to the
// nearest integer, ties to even (default rounding mode; -ffp-contract=off, no fast-math), and the
// subtraction is exact. |v| >= 2^23 is already an integer; NaN and infinities pass through.
inline float RoundHalfEven(float v) {
  constexpr float kTwo23 = 8388608.0f;
  const float a = std::fabs(v);
  const float r = std::copysign((a + kTwo23) - kTwo23, v);
  return a < kTwo23 ? r : v;  // a select, not a branch: QuantRow vectorises
}

template <int R>
inline float RoundMode(float v) {
  if (R == 0) return RoundHalfEven(v);
  if (R == 1) return std::ceil(v);
  if (R == 2) return std::floor(v);
  return std::trunc(v);
}

struct QuantParams {
  float sc, zp, qmin, qmax;
  int32_t zpi, vmin, vmax;  // |zp| <= 65536, 1..16 planes: all fit int32
};

// code[i] = clamp(round(x[i] / sc + zp), qmin, qmax) - zp for n values, exactly Quant's float32
// steps (one divide, one add, round, clamp); true if some value has no code (NaN, or outside
// what the planes hold), whose code is then meaningless.
template <int R>
inline bool QuantRowScalar(const float* x, int64_t n, const QuantParams& qp, int32_t* code) {
  const float sc = qp.sc, zp = qp.zp, qmin = qp.qmin, qmax = qp.qmax;
  const int32_t zpi = qp.zpi, vmin = qp.vmin, vmax = qp.vmax;
  int bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    float q = RoundMode<R>(x[i] / sc + zp);
    q = q < qmin ? qmin : (q > qmax ? qmax : q);
    const bool nan = !(q == q);
    const int32_t c = static_cast<int32_t>(nan ? 0.0f : q) - zpi;
    bad |= static_cast<int>(nan) | static_cast<int>(c < vmin) | static_cast<int>(c > vmax);
    code[i] = c;
  }
  return bad != 0;
}

template <int R>
inline bool QuantRow(const float* x, int64_t n, const QuantParams& qp, int32_t* code) {
#if defined(__SSE2__)
  {
    // Four lanes of QuantRowScalar<R>: IEEE divide and add, the rounding (below) and the clamp
    // as selects, so every lane rounds exactly as the scalar code does.
    const __m128 sc = _mm_set1_ps(qp.sc), zp = _mm_set1_ps(qp.zp);
    const __m128 qmin = _mm_set1_ps(qp.qmin), qmax = _mm_set1_ps(qp.qmax);
    const __m128 two23 = _mm_set1_ps(8388608.0f), sign = _mm_set1_ps(-0.0f);
    const __m128 one = _mm_set1_ps(1.0f);
    const __m128i zpi = _mm_set1_epi32(qp.zpi);
    const __m128i vmin = _mm_set1_epi32(qp.vmin), vmax = _mm_set1_epi32(qp.vmax);
    auto select = [](__m128 m, __m128 a, __m128 b) {
      return _mm_or_ps(_mm_and_ps(m, a), _mm_andnot_ps(m, b));
    };
    // |v| >= 2^23 is already an integer and NaN passes through (as RoundMode); below that:
    // R 0: RoundHalfEven's 2^23 trick; R 3: truncation through int32 (exact for |v| < 2^23),
    // R 1 / 2: that truncation plus / minus 1 where it fell below / above v; the sign of v is
    // kept (so zeros come out signed as std::trunc / ceil / floor give them).
    auto round = [&](__m128 v) {
      const __m128 a = _mm_andnot_ps(sign, v);
      __m128 r;
      if (R == 0) {
        r = _mm_sub_ps(_mm_add_ps(a, two23), two23);
      } else {
        const __m128 t = _mm_cvtepi32_ps(_mm_cvttps_epi32(v));
        __m128 u = t;
        if (R == 1) u = select(_mm_cmplt_ps(t, v), _mm_add_ps(t, one), t);
        if (R == 2) u = select(_mm_cmpgt_ps(t, v), _mm_sub_ps(t, one), t);
        r = _mm_andnot_ps(sign, u);  // |u|; u is 0 or has v's sign
      }
      r = _mm_or_ps(r, _mm_and_ps(v, sign));
      return select(_mm_cmplt_ps(a, two23), r, v);
    };
    __m128i bad = _mm_setzero_si128();
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
      __m128 q = round(_mm_add_ps(_mm_div_ps(_mm_loadu_ps(x + i), sc), zp));
      q = select(_mm_cmplt_ps(q, qmin), qmin, select(_mm_cmpgt_ps(q, qmax), qmax, q));
      const __m128 nan = _mm_cmpunord_ps(q, q);
      const __m128i c = _mm_sub_epi32(_mm_cvttps_epi32(_mm_andnot_ps(nan, q)), zpi);
      bad = _mm_or_si128(bad, _mm_castps_si128(nan));
      bad = _mm_or_si128(bad, _mm_or_si128(_mm_cmplt_epi32(c, vmin), _mm_cmpgt_epi32(c, vmax)));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(code + i), c);
    }
    const bool any = _mm_movemask_epi8(bad) != 0;
    return QuantRowScalar<R>(x + i, n - i, qp, code + i) || any;
  }
#endif
  return QuantRowScalar<R>(x, n, qp, code);
}

// plane[w] |= bit p of code[w], shifted to `shift`, for w < n.
inline void OrPlaneBits(const int32_t* code, int64_t n, int p, int shift, uint64_t* plane) {
  int64_t w = 0;
#if defined(__SSE2__)
  const __m128i one = _mm_set1_epi32(1), zero = _mm_setzero_si128();
  const __m128i cnt = _mm_cvtsi32_si128(shift);
  for (; w + 4 <= n; w += 4) {
    const __m128i b = _mm_and_si128(
        _mm_srli_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(code + w)), p), one);
    __m128i* dst = reinterpret_cast<__m128i*>(plane + w);
    _mm_storeu_si128(dst, _mm_or_si128(_mm_loadu_si128(dst),
                                       _mm_sll_epi64(_mm_unpacklo_epi32(b, zero), cnt)));
    _mm_storeu_si128(dst + 1, _mm_or_si128(_mm_loadu_si128(dst + 1),
                                           _mm_sll_epi64(_mm_unpackhi_epi32(b, zero), cnt)));
  }
#endif
  for (; w < n; ++w) plane[w] |= static_cast<uint64_t>((code[w] >> p) & 1) << shift;
}

// The first of n values (stride apart) with no code into *bad, unless one is already recorded.
template <int R>
inline void ReportRow(const float* x, int64_t n, int64_t stride, const QuantParams& qp,
                      float* bad, char* has_bad) {
  if (*has_bad) return;
  for (int64_t i = 0; i < n; ++i) {
    int32_t c = 0;
    if (QuantRow<R>(x + i * stride, 1, qp, &c)) {
      *bad = x[i * stride];
      *has_bad = 1;
      return;
    }
  }
}

}  // namespace

// ---------------------------------------------------------------------------- QuantizePack

QuantizePackOp::QuantizePackOp(const OrtApi* api, const OrtKernelInfo* info) noexcept {
  Construct(api, info, "qcompile::QuantizePack", &label_, &init_error_, [&](const Attrs& at) {
    CheckNodeArity(api, info, label_, 1, 1);
    const UniformQuantAttrs u = ParseUniformQuant(at, label_, "", "", 65536.0f);
    scale_ = u.scale;
    zero_point_ = u.zero_point;
    qmin_ = u.qmin;
    qmax_ = u.qmax;
    rounding_ = static_cast<int>(u.rounding);  // 0 ROUND, 1 CEIL, 2 FLOOR, 3 ROUND_TO_ZERO
    planes_ = at.Int("planes", 0);
    group_ = at.Int("group", 1);
    if (group_ < 1) Fail(label_, "attribute 'group': expected >= 1, got ", group_);
    zp_int_ = static_cast<int64_t>(zero_point_);
    // Range of v = q - zero_point; two's complement planes iff it reaches below 0 (SPEC).
    const int64_t lo = static_cast<int64_t>(qmin_) - zp_int_;
    const int64_t hi = static_cast<int64_t>(qmax_) - zp_int_;
    twos_complement_ = lo < 0;
    int64_t needed = 1;
    if (!twos_complement_) {
      while ((int64_t{1} << needed) - 1 < hi) ++needed;
    } else {
      while (!(-(int64_t{1} << (needed - 1)) <= lo && hi <= (int64_t{1} << (needed - 1)) - 1))
        ++needed;
    }
    if (planes_ == 0) planes_ = needed;
    if (planes_ < 1 || planes_ > bitserial::kMaxPlanes)
      Fail(label_, "attribute 'planes': expected 1..", bitserial::kMaxPlanes,
           " (0: as needed), got ", planes_);
    v_min_ = twos_complement_ ? -(int64_t{1} << (planes_ - 1)) : 0;
    v_max_ = twos_complement_ ? (int64_t{1} << (planes_ - 1)) - 1 : (int64_t{1} << planes_) - 1;
  });
}

Ort::Status QuantizePackOp::Compute(OrtKernelContext* ctx, const F32Tensor& x, U64Tensor& y) {
  return GuardCompute(label_, [&] {
    if (!init_error_.empty()) throw OpError(init_error_);
    const std::vector<int64_t>& xs = x.Shape();
    const int64_t P = planes_;
    int64_t N, C, H, W, G, rows;
    if (xs.size() == 2) {
      if (group_ != 1)
        Fail(label_, "attribute 'group': rank-2 input X ", ShapeStr(xs), " requires group 1, got ",
             group_);
      N = xs[0], C = xs[1], H = 1, W = 1, G = 1;
      rows = N;
    } else if (xs.size() == 4) {
      N = xs[0], C = xs[1], H = xs[2], W = xs[3], G = group_;
      if (C % G != 0)
        Fail(label_, "attribute 'group' (", G, ") must divide the channels of input X ",
             ShapeStr(xs));
      rows = N * H;
    } else {
      Fail(label_, "input X: expected rank 2 [N, K] or rank 4 [N, C, H, W], got shape ",
           ShapeStr(xs));
    }
    if (C < 1) Fail(label_, "input X: expected at least one channel, got shape ", ShapeStr(xs));
    const int64_t Cg = C / G, Wg = Words(Cg), XW = G * P * Wg;
    uint64_t* out = xs.size() == 2 ? y.Allocate({N, XW}) : y.Allocate({N, H, W, XW});
    if (N == 0 || H == 0 || W == 0) return;
    const float* in = x.Data();
    const QuantParams qp{scale_, zero_point_, qmin_, qmax_, static_cast<int32_t>(zp_int_),
                         static_cast<int32_t>(v_min_), static_cast<int32_t>(v_max_)};
    const int rounding = rounding_;
    // Per row (n, h): the first value that cannot be encoded, reported after the loop.
    std::vector<float> bad(static_cast<size_t>(rows), 0.0f);
    std::vector<char> has_bad(static_cast<size_t>(rows), 0);
    // One row (n, h) of every channel. Codes of a channel's W values come from a branch-free,
    // vectorisable loop (QuantRow); their plane bits are ORed into plane-major scratch words
    // [XW][W] (contiguous in w, vectorisable), transposed into the output at the end. A row with
    // a value that has no code is redone value by value to report the first one.
    auto pack_row = [&](auto mode, size_t r) {
      constexpr int kMode = decltype(mode)::value;
      const int64_t n = static_cast<int64_t>(r) / H, h = static_cast<int64_t>(r) % H;
      uint64_t* o = out + (n * H + h) * W * XW;
      thread_local std::vector<int32_t> codes;
      thread_local std::vector<uint64_t> planes;
      bool any_bad = false;
      if (W == 1) {
        // [N, K] (and 1x1 images): the row's channels are contiguous; one word at a time.
        const float* xr = in + n * C * H + h;  // H == 1 here unless W == 1 < H
        if (H == 1) {
          if (codes.size() < static_cast<size_t>(C)) codes.resize(static_cast<size_t>(C));
          any_bad = QuantRow<kMode>(xr, C, qp, codes.data());
          for (int64_t g = 0; g < G; ++g)
            for (int64_t k = 0; k < Wg; ++k) {
              const int64_t c0 = g * Cg + k * kWordBits;
              const int64_t nc = std::min<int64_t>(kWordBits, (g + 1) * Cg - c0);
              const int32_t* cw = codes.data() + c0;
              for (int64_t p = 0; p < P; ++p) {
                uint64_t word = 0;
                for (int64_t i = 0; i < nc; ++i)
                  word |= static_cast<uint64_t>((cw[i] >> p) & 1) << i;
                o[(g * P + p) * Wg + k] = word;
              }
            }
          if (any_bad) ReportRow<kMode>(xr, C, 1, qp, &bad[r], &has_bad[r]);
          return;
        }
      }
      if (codes.size() < static_cast<size_t>(W)) codes.resize(static_cast<size_t>(W));
      if (planes.size() < static_cast<size_t>(XW * W)) planes.resize(static_cast<size_t>(XW * W));
      std::memset(planes.data(), 0, static_cast<size_t>(XW * W) * sizeof(uint64_t));
      for (int64_t c = 0; c < C; ++c) {
        const int64_t g = c / Cg, cg = c % Cg;
        const int shift = static_cast<int>(cg % kWordBits);
        const float* xr = in + ((n * C + c) * H + h) * W;
        if (QuantRow<kMode>(xr, W, qp, codes.data())) {
          any_bad = true;
          ReportRow<kMode>(xr, W, 1, qp, &bad[r], &has_bad[r]);
        }
        const int32_t* cd = codes.data();
        for (int64_t p = 0; p < P; ++p)
          OrPlaneBits(cd, W, static_cast<int>(p), shift,
                      planes.data() + ((g * P + p) * Wg + cg / kWordBits) * W);
      }
      if (any_bad) return;  // the op fails: the output is never read
      const uint64_t* pl = planes.data();
      for (int64_t w = 0; w < W; ++w)
        for (int64_t j = 0; j < XW; ++j) o[w * XW + j] = pl[j * W + w];
    };
    ParallelFor(ctx, static_cast<size_t>(rows), [&](size_t r) {
      switch (rounding) {
        case 0: pack_row(std::integral_constant<int, 0>{}, r); break;
        case 1: pack_row(std::integral_constant<int, 1>{}, r); break;
        case 2: pack_row(std::integral_constant<int, 2>{}, r); break;
        default: pack_row(std::integral_constant<int, 3>{}, r); break;
      }
    });
    for (int64_t r = 0; r < rows; ++r)
      if (has_bad[r])
        Fail(label_, "input X ", ShapeStr(xs), ": value ", bad[r], " quantizes to a code outside [",
             v_min_, ", ", v_max_, "] that ", P, " planes hold (or is NaN)");
  });
}

// ---------------------------------------------------------------------------- plane attributes

void PlaneAttrs::Parse(const Attrs& at, const std::string& label) {
  act_coeffs = at.Ints("act_coeffs", {});
  weight_coeffs = at.Ints("weight_coeffs", {});
  weight_offset = at.Int("weight_offset", 0);
  auto check = [&](const char* name, const std::vector<int64_t>& v) {
    if (v.empty() || static_cast<int64_t>(v.size()) > bitserial::kMaxPlanes)
      Fail(label, "attribute '", name, "': expected 1..", bitserial::kMaxPlanes, " ints, got ",
           v.size(), v.empty() ? " (missing or empty; it is required)" : "");
    for (int64_t c : v)
      if (c < -(int64_t{1} << 20) || c > (int64_t{1} << 20))
        Fail(label, "attribute '", name, "': expected |coefficient| <= 2^20, got ", ShapeStr(v));
  };
  check("act_coeffs", act_coeffs);
  check("weight_coeffs", weight_coeffs);
  if (weight_offset < -(int64_t{1} << 20) || weight_offset > (int64_t{1} << 20))
    Fail(label, "attribute 'weight_offset': expected |offset| <= 2^20, got ", weight_offset);
}

void PlaneAttrs::CheckRange(const std::string& label, int64_t terms) const {
  int64_t amax = 0, wmax = std::llabs(weight_offset);
  for (int64_t c : act_coeffs) amax += std::llabs(c);
  for (int64_t c : weight_coeffs) wmax += std::llabs(c);
  // |D| <= terms * max|v_act| * max|v_w|, computed in double to stay clear of overflow.
  const double bound =
      static_cast<double>(terms) * static_cast<double>(amax) * static_cast<double>(wmax);
  if (bound > 2147483647.0)
    Fail(label, "the dot product can reach ", bound, " (", terms, " terms, act_coeffs ",
         ShapeStr(act_coeffs), ", weight_coeffs ", ShapeStr(weight_coeffs), ", weight_offset ",
         weight_offset, "), more than the int32 D holds");
}

void PlaneAttrs::Fill(bitserial::BitSerialArgs* a) const {
  a->P = static_cast<int64_t>(act_coeffs.size());
  a->Q = static_cast<int64_t>(weight_coeffs.size());
  for (int64_t p = 0; p < a->P; ++p) a->act_coeffs[p] = act_coeffs[p];
  for (int64_t q = 0; q < a->Q; ++q) a->weight_coeffs[q] = weight_coeffs[q];
  a->weight_offset = weight_offset;
}

// ---------------------------------------------------------------------------- BitSerialConv

BitSerialConvOp::BitSerialConvOp(const OrtApi* api, const OrtKernelInfo* info) noexcept {
  Construct(api, info, "qcompile::BitSerialConv", &label_, &init_error_, [&](const Attrs& at) {
    CheckNodeArity(api, info, label_, 4, 1);
    attrs_.Parse(at, label_, /*with_channels=*/true);
    planes_.Parse(at, label_);
    planes_.CheckRange(label_, (attrs_.in_channels / attrs_.group) * attrs_.kernel_shape[0] *
                                   attrs_.kernel_shape[1]);
    variant_ = PickVariant(label_, &init_error_);
    PrepareWeights(info, variant_, attrs_.group,
                   static_cast<int64_t>(planes_.weight_coeffs.size()), &const_w_);
    PrepareTapConcatWeights(info, variant_, attrs_,
                            static_cast<int64_t>(planes_.weight_coeffs.size()), &const_w_concat_);
    lut_.use = LutUseFor(variant_);
  });
}

Ort::Status BitSerialConvOp::Compute(OrtKernelContext* ctx, const U64Tensor& x, const U64Tensor& w,
                                     const F32Tensor& scale, const F32Tensor& bias, F32Tensor& y) {
  return GuardCompute(label_, [&] {
    if (!init_error_.empty()) throw OpError(init_error_);
    const std::vector<int64_t>& ws = w.Shape();
    bitserial::BitSerialArgs a{};
    planes_.Fill(&a);
    a.geo = MakeConvGeometry(label_, attrs_, x.Shape(), ws, a.P, a.Q);
    const xnor::ConvGeometry& s = a.geo;
    CheckVector(label_, "scale", scale.Shape(), s.M, "W is " + ShapeStr(ws));
    CheckVector(label_, "bias", bias.Shape(), s.M, "W is " + ShapeStr(ws));
    float* out = y.Allocate({s.N, s.M, s.OH, s.OW});
    if (s.N == 0) return;
    if (s.H == 0 || s.W == 0) {  // only padded taps: D = 0
      for (int64_t i = 0; i < s.N * s.M * s.OH * s.OW; ++i) {
        const int64_t m = (i / (s.OH * s.OW)) % s.M;
        out[i] = 0.0f * scale.Data()[m] + bias.Data()[m];
      }
      return;
    }
    a.x = x.Data();
    a.w = w.Data();
    a.scale = scale.Data();
    a.bias = bias.Data();
    a.y = out;
    RunBitSerial(ctx, *variant_, a, const_w_.Get(w.Data(), ws),
                 const_w_concat_.Get(w.Data(), ws), &lut_);
  });
}

// ---------------------------------------------------------------------------- BitSerialGemm

BitSerialGemmOp::BitSerialGemmOp(const OrtApi* api, const OrtKernelInfo* info) noexcept {
  Construct(api, info, "qcompile::BitSerialGemm", &label_, &init_error_, [&](const Attrs& at) {
    CheckNodeArity(api, info, label_, 4, 1);
    in_features_ = at.Int("in_features", -1);
    if (in_features_ < 1 || in_features_ > kMaxAttr)
      Fail(label_, "attribute 'in_features': expected 1..", kMaxAttr, ", got ", in_features_,
           in_features_ == -1 ? " (missing; it is required)" : "");
    planes_.Parse(at, label_);
    planes_.CheckRange(label_, in_features_);
    variant_ = PickVariant(label_, &init_error_);
    PrepareWeights(info, variant_, 1, static_cast<int64_t>(planes_.weight_coeffs.size()),
                   &const_w_);
  });
}

Ort::Status BitSerialGemmOp::Compute(OrtKernelContext* ctx, const U64Tensor& x, const U64Tensor& w,
                                     const F32Tensor& scale, const F32Tensor& bias, F32Tensor& y) {
  return GuardCompute(label_, [&] {
    if (!init_error_.empty()) throw OpError(init_error_);
    const std::vector<int64_t>& xs = x.Shape();
    const std::vector<int64_t>& ws = w.Shape();
    bitserial::BitSerialArgs a{};
    planes_.Fill(&a);
    CheckRank(label_, "X", xs, 2, "[N, P*Kw]");
    CheckRank(label_, "W", ws, 2, "[M, Q*Kw]");
    const int64_t Kw = Words(in_features_);
    if (xs[1] != a.P * Kw)
      Fail(label_, "input X: expected last dim P*ceil(in_features/64) = ", a.P, "*", Kw, " = ",
           a.P * Kw, " (in_features ", in_features_, "), got shape ", ShapeStr(xs));
    if (ws[0] < 1 || ws[1] != a.Q * Kw)
      Fail(label_, "input W: expected shape [M, ", a.Q * Kw, "] (Q*ceil(in_features/64), Q = ",
           a.Q, ") with M >= 1, got ", ShapeStr(ws));
    CheckVector(label_, "scale", scale.Shape(), ws[0], "W is " + ShapeStr(ws));
    CheckVector(label_, "bias", bias.Shape(), ws[0], "W is " + ShapeStr(ws));
    // A dense layer is a 1x1 convolution of a 1x1 image: the same plane layouts.
    xnor::ConvGeometry& s = a.geo;
    s.N = xs[0];
    s.H = s.W = 1;
    s.G = 1;
    s.Cg = in_features_;
    s.Wg = Kw;
    s.XW = a.P * Kw;
    s.M = s.Mg = ws[0];
    s.KH = s.KW = 1;
    s.sh = s.sw = s.dh = s.dw = 1;
    s.OH = s.OW = 1;
    float* out = y.Allocate({s.N, s.M});
    if (s.N == 0) return;
    a.x = x.Data();
    a.w = w.Data();
    a.scale = scale.Data();
    a.bias = bias.Data();
    a.y = out;
    RunBitSerial(ctx, *variant_, a, const_w_.Get(w.Data(), ws));
  });
}

}  // namespace qcompile
