#include "direct_conv.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <limits>
#include <type_traits>

#include "../common/cpu_features.h"
#include "../common/phases.h"
#include "epilogue_checks.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace qcompile {
namespace {

const DirectConvVariant kVariants[] = {
#ifdef QCOMPILE_HAVE_AMX
    // an AMX step multiplies 16 quads: with fewer input channels the tiles run mostly empty (CNV's
    // 3-channel first layer: 0.5x the VNNI kernel), so the best-available pick needs 8 quads
    {{"amx", "amx-tile amx-int8", isa::AmxInt8}, DirectSumAmx, kAmxBlock, 32, false, true, 8},
#endif
#ifdef QCOMPILE_HAVE_AVX512VNNI
    {{"avx512vnni", "avx512f avx512vnni", isa::Avx512Vnni}, DirectSumVnni, kVnniBlock, 16, false, false, 1},
#endif
#ifdef QCOMPILE_HAVE_AVX2
    {{"avx2", "avx2", isa::Avx2}, DirectSumAvx2, kAvx2Block, 8, true, false, 1},
#endif
    {{"portable", "", isa::None}, dc::SumBlockPortable, dc::kPortableBlock, 1, false, false, 1},
};
constexpr VariantTable<DirectConvVariant> kTable{kVariants, sizeof(kVariants) / sizeof(kVariants[0]),
                                                 "QCOMPILE_DIRECT_KERNEL"};

int64_t RoundUp(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// The quads the variant's kernel reads for cg input channels (AMX: whole chunks of 16 above 16).
int64_t QuadsFor(const DirectConvVariant& v, int64_t cg) {
  const int64_t quads = (cg + 3) / 4;
  return v.amx_rows && quads > 16 ? RoundUp(quads, 16) : quads;
}

// Every adjacent pair (0, 1), (2, 3) of each weight quad has |w0| + |w1| <= 128.
bool PairsFitInt16(const std::vector<int32_t>& wv, int64_t rows, int64_t cg, int64_t taps) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t t = 0; t < taps; ++t)
      for (int64_t c = 0; c + 1 < cg; c += 2) {
        const int32_t a = wv[(r * cg + c) * taps + t], b = wv[(r * cg + c + 1) * taps + t];
        if ((a < 0 ? -a : a) + (b < 0 ? -b : b) > 128) return false;
      }
  return true;
}

// The variant a node runs: the one it names, else the first this CPU runs that is exact for
// these weights (the AVX2 kernel's pair bound) and made for this many input channel quads.
const DirectConvVariant& PickVariant(const std::string& label, const std::string& kernel,
                                     bool pairs_fit, int64_t quads) {
  bool forced = false;
  const DirectConvVariant& v = SelectVariant(kTable, label, kernel, &forced);
  if (forced) {
    if (v.pairs_int16 && !pairs_fit)
      Fail(label, "kernel variant '", v.id.name, "' needs weights with |w0| + |w1| <= 128 for every "
           "adjacent pair of input channels (vpmaddubsw's int16 pairs); these weights exceed it");
    return v;
  }
  for (size_t i = 0; i < kTable.count; ++i) {
    const DirectConvVariant& row = kTable.rows[i];
    if (row.id.supported() && (pairs_fit || !row.pairs_int16) && quads >= row.min_quads) return row;
  }
  Fail(label, "no exact kernel variant for these weights on this CPU");
}

}  // namespace

const VariantTable<DirectConvVariant>& DirectConvVariants() { return kTable; }

double DirectConvCeiling(const char* name, double seconds) {
  const DirectConvVariant* v = nullptr;
  for (size_t i = 0; i < kTable.count; ++i)
    if (std::strcmp(kTable.rows[i].id.name, name) == 0 && kTable.rows[i].id.supported()) v = &kTable.rows[i];
  if (v == nullptr) return 0.0;
  // 64 input channels, a 3x3 window on a 16-wide plane, 480 flat outputs: ~33 KB of x, 18 KB of w
  dc::Geometry g{16, 9, 16, 480, RoundUp(480, v->tile), 0};  // CQ, taps, Q, flat, run, P
  const int64_t runs[9] = {0, 1, 2, 16, 17, 18, 32, 33, 34};
  g.P = RoundUp(g.run + runs[8], 16) + 16;
  std::vector<uint8_t> xq(static_cast<size_t>(g.CQ * g.P * 4));
  std::vector<int8_t> wq(static_cast<size_t>(g.taps * g.CQ * v->block * 4));
  for (size_t i = 0; i < xq.size(); ++i) xq[i] = static_cast<uint8_t>(i * 7 % 16);
  for (size_t i = 0; i < wq.size(); ++i) wq[i] = static_cast<int8_t>(i * 5 % 7) - 3;
  std::vector<int32_t> init(static_cast<size_t>(v->block), 0), acc(static_cast<size_t>(v->block * g.run));
  const double macs_per_call = static_cast<double>(v->block * g.run * g.CQ * 4 * g.taps);
  int64_t calls = 0;
  const auto t0 = std::chrono::steady_clock::now();
  double elapsed = 0.0;
  do {
    for (int i = 0; i < 64; ++i, ++calls) v->sum(g, runs, xq.data(), wq.data(), init.data(), acc.data());
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  } while (elapsed < seconds);
  return acc[static_cast<size_t>(calls % g.run)] == std::numeric_limits<int32_t>::min() ? 0.0 : macs_per_call * calls / elapsed;
}

namespace {

// w [M, Cg, KH, KW] minus its zero point, checked to fit int8, in the variant's blocked layout.
template <typename TW>
void PrepareWeights(const std::string& label, const TW* w, const std::vector<int64_t>& ws,
                    int64_t group, int32_t w_zp, const std::string& kernel, DirectWeights* out) {
  const int64_t M = ws[0], cg = ws[1], taps = ws[2] * ws[3], Mg = M / group;
  std::vector<int32_t> wv(static_cast<size_t>(M * cg * taps));
  for (size_t i = 0; i < wv.size(); ++i) {
    wv[i] = int32_t{w[i]} - w_zp;
    if (wv[i] < -128 || wv[i] > 127)
      Fail(label, "input w: every w - w_zero_point must fit int8 (this kernel multiplies int8 "
           "weights), got ", int32_t{w[i]}, " - ", w_zp, " at element ", i);
  }
  const DirectConvVariant& v = PickVariant(label, kernel, PairsFitInt16(wv, M, cg, taps), (cg + 3) / 4);
  const int64_t MB = v.block, blocks = (Mg + MB - 1) / MB, CQ = QuadsFor(v, cg);
  const int64_t qk = v.amx_rows ? std::min<int64_t>(16, CQ) : 1;
  out->variant = &v;
  out->w_zp = w_zp;
  out->shape = ws;
  out->packed.assign(static_cast<size_t>(group * blocks * taps * CQ * MB * 4), int8_t{0});
  out->w_sum.assign(static_cast<size_t>(M), 0);
  for (int64_t m = 0; m < M; ++m) {
    const int64_t gi = m / Mg, mi = m % Mg, blk = mi / MB, j = mi % MB;
    int8_t* dst = out->packed.data() + (gi * blocks + blk) * taps * CQ * MB * 4;
    for (int64_t c = 0; c < cg; ++c)
      for (int64_t t = 0; t < taps; ++t) {
        const int32_t val = wv[(m * cg + c) * taps + t];
        const int64_t q = c / 4;  // quad q: chunk q / qk, row j's quad q % qk
        const int64_t at = v.amx_rows ? (((t * (CQ / qk) + q / qk) * MB + j) * qk + q % qk) * 4
                                      : ((t * CQ + q) * MB + j) * 4;
        dst[at + c % 4] = static_cast<int8_t>(val);
        out->w_sum[m] += val;
      }
  }
}

struct DirectRun {
  int64_t N = 0, C = 0, H = 0, W = 0, M = 0, cg = 0, OH = 0, OW = 0;
  int64_t pt = 0, pl = 0, sh = 1, sw = 1, Hq = 0;  // Hq: rows of a phase plane
  dc::Geometry g{};
  std::vector<int64_t> row_phases, col_phases;  // the phases some tap reads (common/phases.h)
  std::vector<int64_t> tap_phase, tap_offset;   // per tap: its phase plane, its run's start in it
  std::vector<int64_t> runs;                    // per tap: the run's start in xq (RunDirect)
};

DirectRun PlanDirect(const std::string& label, const ConvAttrs& a, int64_t group,
                     const std::vector<int64_t>& xs, const std::vector<int64_t>& ws,
                     const std::vector<int64_t>& xzs, const std::vector<int64_t>& wzs) {
  CheckRank(label, "x", xs, 4, "[N, C, H, W]");
  CheckRank(label, "w", ws, 4, "[M, C / group, KH, KW]");
  DirectRun r;
  r.N = xs[0], r.C = xs[1], r.H = xs[2], r.W = xs[3], r.M = ws[0], r.cg = ws[1];
  if (r.C % group != 0 || r.M % group != 0)
    Fail(label, "attribute 'group': ", group, " must divide the input channels (", r.C,
         ") and the output channels (", r.M, ")");
  if (ws[1] != r.C / group || ws[2] != a.kernel_shape[0] || ws[3] != a.kernel_shape[1])
    Fail(label, "input w: expected [M, ", r.C / group, ", ", a.kernel_shape[0], ", ",
         a.kernel_shape[1], "] (C / group from input x ", ShapeStr(xs), ", kernel_shape), got ",
         ShapeStr(ws));
  if (NumElements(xzs) != 1 || NumElements(wzs) != 1)
    Fail(label, "inputs x_zero_point, w_zero_point: expected scalars (per tensor), got shapes ",
         ShapeStr(xzs), ", ", ShapeStr(wzs));
  a.OutputSize(label, xs, r.H, r.W, &r.OH, &r.OW);
  r.pt = a.pads[0], r.pl = a.pads[1], r.sh = a.strides[0], r.sw = a.strides[1];
  const int64_t Hp = r.H + a.pads[0] + a.pads[2], Wp = r.W + a.pads[1] + a.pads[3];
  const int64_t KH = a.kernel_shape[0], KW = a.kernel_shape[1], dh = a.dilations[0], dw = a.dilations[1];
  // phase (rp, cp) holds padded rows rp, rp + sh, ... and columns cp, cp + sw, ... as a [Hq, Q]
  // plane: output (oh, ow)'s tap (kh, kw) is its element (oh + kh dh / sh, ow + kw dw / sw)
  r.Hq = (Hp + r.sh - 1) / r.sh;
  r.g.Q = (Wp + r.sw - 1) / r.sw;
  std::vector<int64_t> row_of, col_of;
  UsedPhases(KH, dh, r.sh, &r.row_phases, &row_of);
  UsedPhases(KW, dw, r.sw, &r.col_phases, &col_of);
  for (int64_t kh = 0; kh < KH; ++kh)
    for (int64_t kw = 0; kw < KW; ++kw) {
      r.tap_phase.push_back(row_of[kh] * static_cast<int64_t>(r.col_phases.size()) + col_of[kw]);
      r.tap_offset.push_back(kh * dh / r.sh * r.g.Q + kw * dw / r.sw);
    }
  r.g.taps = KH * KW;
  r.g.flat = (r.OH - 1) * r.g.Q + r.OW;
  return r;
}

// Image n's channels [c0, c0 + cg) as the used phase planes, each [CQ, P, 4] u8
// (direct_conv_kernel.h): int8 x shifted by +128, the padding and the slack x_zp's code (0 after
// the shift), channels past cg zero.
template <typename TX>
void PackInput(const DirectRun& r, const TX* x, uint8_t pad_code, uint8_t* xq) {
  const dc::Geometry& g = r.g;
  constexpr uint8_t kShift = std::is_signed_v<TX> ? 0x80 : 0;
  const int64_t n_cols = static_cast<int64_t>(r.col_phases.size());
  const int64_t phase_size = g.CQ * g.P * 4;
  std::memset(xq, pad_code, static_cast<size_t>(phase_size * n_cols * static_cast<int64_t>(r.row_phases.size())));
  const int64_t HW = r.H * r.W;
  for (int64_t cq = 0; cq < (r.cg + 3) / 4; ++cq) {  // quads past the channels keep pad_code
    const int64_t nc = std::min<int64_t>(4, r.cg - 4 * cq);
    const TX* src[4];
    for (int64_t k = 0; k < 4; ++k) src[k] = x + (4 * cq + std::min(k, nc - 1)) * HW;
    for (int64_t h = 0; h < r.H; ++h) {
      const auto rp = std::find(r.row_phases.begin(), r.row_phases.end(), (h + r.pt) % r.sh);
      if (rp == r.row_phases.end()) continue;  // no tap reads this row
      const int64_t off = h * r.W, row = (h + r.pt) / r.sh;
      for (int64_t ci = 0; ci < n_cols; ++ci) {
        // phase column j holds padded column j sw + cp, i.e. input column j sw + cp - pl
        const int64_t cp = r.col_phases[ci], first_j = r.pl > cp ? (r.pl - cp + r.sw - 1) / r.sw : 0;
        const int64_t first_col = first_j * r.sw + cp - r.pl;
        uint8_t* dst = xq + ((rp - r.row_phases.begin()) * n_cols + ci) * phase_size +
                       (cq * g.P + row * g.Q + first_j) * 4;
#if defined(__SSE2__)
        if (nc == 4 && r.sw == 1 && r.W >= 16) {  // 16 pixels a step (the last overlapping)
          const __m128i shift = _mm_set1_epi8(static_cast<char>(kShift));
          for (int64_t w0 = 0;; w0 = std::min(w0 + 16, r.W - 16)) {
            __m128i v[4];
            for (int k = 0; k < 4; ++k)
              v[k] = _mm_xor_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src[k] + off + w0)), shift);
            const __m128i ab_lo = _mm_unpacklo_epi8(v[0], v[1]), ab_hi = _mm_unpackhi_epi8(v[0], v[1]);
            const __m128i cd_lo = _mm_unpacklo_epi8(v[2], v[3]), cd_hi = _mm_unpackhi_epi8(v[2], v[3]);
            __m128i* out = reinterpret_cast<__m128i*>(dst + 4 * w0);
            _mm_storeu_si128(out, _mm_unpacklo_epi16(ab_lo, cd_lo));
            _mm_storeu_si128(out + 1, _mm_unpackhi_epi16(ab_lo, cd_lo));
            _mm_storeu_si128(out + 2, _mm_unpacklo_epi16(ab_hi, cd_hi));
            _mm_storeu_si128(out + 3, _mm_unpackhi_epi16(ab_hi, cd_hi));
            if (w0 == r.W - 16) break;
          }
          continue;
        }
        if (nc == 4 && r.sw == 1 && r.W >= 8) {  // 8 pixels a step (the last overlapping)
          const __m128i shift = _mm_set1_epi8(static_cast<char>(kShift));
          for (int64_t w0 = 0;; w0 = std::min(w0 + 8, r.W - 8)) {
            __m128i v[4];
            for (int k = 0; k < 4; ++k)
              v[k] = _mm_xor_si128(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(src[k] + off + w0)), shift);
            const __m128i ab = _mm_unpacklo_epi8(v[0], v[1]), cd = _mm_unpacklo_epi8(v[2], v[3]);
            __m128i* out = reinterpret_cast<__m128i*>(dst + 4 * w0);
            _mm_storeu_si128(out, _mm_unpacklo_epi16(ab, cd));
            _mm_storeu_si128(out + 1, _mm_unpackhi_epi16(ab, cd));
            if (w0 == r.W - 8) break;
          }
          continue;
        }
#endif
        for (int64_t j = 0, col = first_col; col < r.W; ++j, col += r.sw)
          for (int64_t k = 0; k < 4; ++k)
            dst[4 * j + k] = k < nc ? static_cast<uint8_t>(static_cast<uint8_t>(src[k][off + col]) ^ kShift) : 0;
      }
    }
  }
}

// Output channels per parallel task are grouped so each task has at least this many outputs.
constexpr int64_t kMinTaskOutputs = 1 << 12;

// The sums of every output channel, handed to sink(n, m, acc) with acc the channel's flat
// [OH, Q] outputs (columns OW.. scratch); each parallel task makes its own sink with make_sink()
// (the place for the task's scratch rows).
template <typename TX, typename MakeSink>
void RunDirect(OrtKernelContext* ctx, DirectRun& r, int64_t group, const DirectWeights& weights,
               const TX* xd, int32_t xzp, const MakeSink& make_sink) {
  const DirectConvVariant& v = *weights.variant;
  dc::Geometry& g = r.g;
  g.CQ = QuadsFor(v, r.cg);
  g.run = RoundUp(g.flat, v.tile);
  // planes 16 pixels times an odd number apart: the 16 rows of an AMX input tile (16 quads) fall
  // in 16 different cache sets instead of aliasing to a few (a plane often spans ~4 KB)
  const int64_t longest = *std::max_element(r.tap_offset.begin(), r.tap_offset.end());
  g.P = RoundUp(std::max(r.Hq * g.Q, g.run + longest), 16);
  if (g.P / 16 % 2 == 0) g.P += 16;
  const int64_t phases = static_cast<int64_t>(r.row_phases.size() * r.col_phases.size());
  r.runs.resize(r.tap_phase.size());
  for (size_t t = 0; t < r.runs.size(); ++t) r.runs[t] = r.tap_phase[t] * g.CQ * g.P + r.tap_offset[t];
  // x's codes as the kernel reads them, u8 (int8 x shifted by +128, as its zero point)
  const int32_t zp_code = std::is_signed_v<TX> ? xzp + 128 : xzp;
  const int64_t Mg = r.M / group, MB = v.block, blocks = (Mg + MB - 1) / MB;
  const int64_t per_task = std::max<int64_t>(1, kMinTaskOutputs / std::max<int64_t>(1, MB * g.run));
  const int64_t tasks = (blocks + per_task - 1) / per_task;
  const int64_t wblock = g.taps * g.CQ * MB * 4;
  std::vector<uint8_t> xq(static_cast<size_t>(phases * g.CQ * g.P * 4));
  for (int64_t n = 0; n < r.N; ++n)
    for (int64_t gi = 0; gi < group; ++gi) {
      PackInput(r, xd + (n * r.C + gi * r.cg) * r.H * r.W, static_cast<uint8_t>(zp_code), xq.data());
      ParallelFor(ctx, static_cast<size_t>(tasks), [&](size_t t) {
        const int64_t task = static_cast<int64_t>(t);
        thread_local std::vector<int32_t> acc;
        acc.resize(static_cast<size_t>(MB * g.run));
        auto sink = make_sink();
        int32_t init[kAmxBlock];
        for (int64_t blk = task * per_task; blk < std::min(blocks, (task + 1) * per_task); ++blk) {
          for (int64_t j = 0; j < MB; ++j) {
            const int64_t mi = blk * MB + j;
            init[j] = mi < Mg ? -zp_code * weights.w_sum[gi * Mg + mi] : 0;
          }
          v.sum(g, r.runs.data(), xq.data(), weights.packed.data() + (gi * blocks + blk) * wblock, init,
                acc.data());
          for (int64_t j = 0; j < MB && blk * MB + j < Mg; ++j)
            sink(n, gi * Mg + blk * MB + j, acc.data() + j * g.run);
        }
      });
    }
}

// The prepared constant weights, or w prepared now into *scratch.
template <typename TW>
const DirectWeights& WeightsFor(const std::string& label, const DirectConvState& s,
                                const Tensor<TW>& w, int32_t w_zp, DirectWeights* scratch) {
  const DirectWeights& c = s.const_w_;
  if (c.src == w.Data() && c.shape == w.Shape() && c.w_zp == w_zp) return c;
  PrepareWeights(label, w.Data(), w.Shape(), s.group_, w_zp, s.kernel_, scratch);
  return *scratch;
}

// At kernel creation: a constant w and w_zero_point are laid out once. A problem is left for
// Compute to report (the same checks run there).
template <typename TW>
void PrepareConstant(const OrtKernelInfo* info, const std::string& label, DirectConvState* s) {
  const TW *w = nullptr, *wz = nullptr;
  std::vector<int64_t> ws, wzs;
  if (!ConstantInput(info, 1, &w, &ws) || !ConstantInput(info, 3, &wz, &wzs)) return;
  if (ws.size() != 4 || NumElements(wzs) != 1 || ws[0] % s->group_ != 0) return;
  try {
    PrepareWeights(label, w, ws, s->group_, int32_t{wz[0]}, s->kernel_, &s->const_w_);
    s->const_w_.src = w;
  } catch (const std::exception&) {
    s->const_w_ = DirectWeights{};
  }
}

}  // namespace

void DirectConvState::Init(const Attrs& at, const std::string& label) {
  attrs_.Parse(at, label, /*with_channels=*/false);
  group_ = at.Int("group", 1);
  if (group_ < 1) Fail(label, "attribute 'group': expected >= 1, got ", group_);
  kernel_ = KernelAttr(at);
  SelectVariant(kTable, label, kernel_);  // an unknown or unsupported name fails here
}

template <typename TX, typename TW>
DirectConvIntegerOp<TX, TW>::DirectConvIntegerOp(const OrtApi* api, const OrtKernelInfo* info) noexcept {
  try {
    label_ = OpLabel(api, info, "qcompile::DirectConvInteger");
    CheckNodeArity(api, info, label_, 4, 1);
    Init(Attrs(api, info, label_), label_);
    PrepareConstant<TW>(info, label_, this);
  } catch (const std::exception& e) {
    init_error_ = e.what();
  }
}

template <typename TX, typename TW>
Ort::Status DirectConvIntegerOp<TX, TW>::Compute(OrtKernelContext* ctx, const Tensor<TX>& x,
                                                 const Tensor<TW>& w,
                                                 const Tensor<TX>& x_zero_point,
                                                 const Tensor<TW>& w_zero_point,
                                                 Tensor<int32_t>& y) {
  return GuardCompute(label_, [&] {
    if (!init_error_.empty()) throw OpError(init_error_);
    DirectRun r = PlanDirect(label_, attrs_, group_, x.Shape(), w.Shape(), x_zero_point.Shape(),
                             w_zero_point.Shape());
    int32_t* out = y.Allocate({r.N, r.M, r.OH, r.OW});
    if (r.N * r.M * r.OH * r.OW == 0) return;
    DirectWeights scratch;
    const DirectWeights& weights = WeightsFor(label_, *this, w, int32_t{w_zero_point.Data()[0]}, &scratch);
    const int64_t Q = r.g.Q, OH = r.OH, OW = r.OW, M = r.M;
    RunDirect(ctx, r, group_, weights, x.Data(), int32_t{x_zero_point.Data()[0]}, [&] {
      return [&](int64_t n, int64_t m, const int32_t* acc) {
        int32_t* dst = out + (n * M + m) * OH * OW;
        for (int64_t oh = 0; oh < OH; ++oh)
          std::memcpy(dst + oh * OW, acc + oh * Q, static_cast<size_t>(OW) * sizeof(int32_t));
      };
    });
  });
}

template <typename TX, typename TW, typename TY>
DirectConvRequantizeOp<TX, TW, TY>::DirectConvRequantizeOp(const OrtApi* api,
                                                           const OrtKernelInfo* info) noexcept {
  try {
    label_ = OpLabel(api, info, "qcompile::DirectConvRequantize");
    CheckNodeArity(api, info, label_, 8, 1);
    Attrs at(api, info, label_);
    Init(at, label_);
    steps_.Parse<TY>(at, label_, "pool_", "");
    PrepareConstant<TW>(info, label_, this);
  } catch (const std::exception& e) {
    init_error_ = e.what();
  }
}

template <typename TX, typename TW, typename TY>
Ort::Status DirectConvRequantizeOp<TX, TW, TY>::Compute(
    OrtKernelContext* ctx, const Tensor<TX>& x, const Tensor<TW>& w,
    const Tensor<TX>& x_zero_point, const Tensor<TW>& w_zero_point,
    const Tensor<float>& scale, const Tensor<float>& bias,
    const Tensor<float>& y_scale, const Tensor<TY>& y_zero_point,
    Tensor<TY>& y) {
  return GuardCompute(label_, [&] {
    if (!init_error_.empty()) throw OpError(init_error_);
    DirectRun r = PlanDirect(label_, attrs_, group_, x.Shape(), w.Shape(), x_zero_point.Shape(),
                             w_zero_point.Shape());
    const int64_t M = r.M;
    const float* ys = y_scale.Data();
    CheckEpilogueInputs(label_, M, " of w", scale.Shape(), bias.Shape(), y_scale.Shape(),
                        y_zero_point.Shape(), ys);
    const int64_t n_ys = NumElements(y_scale.Shape());
    const int64_t ys_step = n_ys == 1 ? 0 : 1;
    steps_.CheckScale(label_, ys, n_ys);
    // pooled: the pool reads each channel's [OH, OW] sums in place (rows Q apart in the flat run)
    PoolGeometry pool{};
    int64_t YH = r.OH, YW = r.OW;
    if (steps_.pool) {
      pool = steps_.Pool(label_, {r.N, M, r.OH, r.OW}, r.OH, r.OW, r.g.Q);
      YH = pool.OH, YW = pool.OW;
    }
    TY* out = y.Allocate({r.N, M, YH, YW});
    if (r.N * M * YH * YW == 0) return;
    DirectWeights scratch;
    const DirectWeights& weights = WeightsFor(label_, *this, w, int32_t{w_zero_point.Data()[0]}, &scratch);
    const int32_t zp = static_cast<int32_t>(y_zero_point.Data()[0]);
    const float lo_f = static_cast<float>(steps_.lo - zp), hi_f = static_cast<float>(steps_.hi - zp);
    const float *s = scale.Data(), *b = bias.Data();
    const int64_t Q = r.g.Q, OH = r.OH, OW = r.OW;
    // pooled: a channel's codes go straight to y; else the codes of its flat run, then its rows
    const int64_t n_codes = steps_.pool ? YH * YW : r.g.flat;
    RunDirect(ctx, r, group_, weights, x.Data(), int32_t{x_zero_point.Data()[0]}, [&] {
      return [&, channel = ChannelCodes<TY>(steps_, pool, n_codes, zp),
              codes = std::vector<TY>(steps_.pool ? 0 : static_cast<size_t>(n_codes))](
                 int64_t n, int64_t m, const int32_t* acc) mutable {
        const Codes k{s[m], b[m], ys[m * ys_step], lo_f, hi_f, zp};
        TY* dst = out + (n * M + m) * YH * YW;
        if (steps_.pool) {
          channel.Run(k, acc, dst);
          return;
        }
        channel.Run(k, acc, codes.data());
        for (int64_t oh = 0; oh < OH; ++oh)
          std::memcpy(dst + oh * OW, codes.data() + oh * Q, static_cast<size_t>(OW));
      };
    });
  });
}

template struct DirectConvIntegerOp<int8_t, int8_t>;
template struct DirectConvIntegerOp<int8_t, uint8_t>;
template struct DirectConvIntegerOp<uint8_t, int8_t>;
template struct DirectConvIntegerOp<uint8_t, uint8_t>;
template struct DirectConvRequantizeOp<int8_t, int8_t, int8_t>;
template struct DirectConvRequantizeOp<int8_t, int8_t, uint8_t>;
template struct DirectConvRequantizeOp<int8_t, uint8_t, int8_t>;
template struct DirectConvRequantizeOp<int8_t, uint8_t, uint8_t>;
template struct DirectConvRequantizeOp<uint8_t, int8_t, int8_t>;
template struct DirectConvRequantizeOp<uint8_t, int8_t, uint8_t>;
template struct DirectConvRequantizeOp<uint8_t, uint8_t, int8_t>;
template struct DirectConvRequantizeOp<uint8_t, uint8_t, uint8_t>;

}  // namespace qcompile
