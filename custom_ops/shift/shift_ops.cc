#include "shift_ops.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "../common/cpu_features.h"
#include "../common/kernel_select.h"
#include "../common/quant_attrs.h"

namespace qcompile {
namespace {


constexpr int64_t kChunk = 1 << 14;  // elements per parallel task of the quantize loops
constexpr int64_t kConvBlockM = 8;   // output channels per ShiftConv task (one output row each)
constexpr int64_t kGemmBlockM = 32;  // output channels per ShiftGemm task (one batch row each)
// int8 path: output pixels (conv) / batch rows (gemm) per task, im2col'd once per task; about
// 96 x K4 bytes, streamed from L2 while one 16-channel weight block stays in L1.
constexpr int64_t kDotRows = 96;
constexpr int64_t kMinTasks = 16;  // split the channel blocks when fewer (row chunk x group) tasks

#ifdef QCOMPILE_TEST_HOOKS
std::atomic<int64_t> g_kernel_runs[2];
#endif

const ShiftVariant kVariants[] = {
    {{"avx2", "avx2", isa::Avx2}, ShiftKernel::kAvx2},
    {{"portable", "", isa::None}, ShiftKernel::kPortable},
};
constexpr VariantTable<ShiftVariant> kTable{kVariants, sizeof(kVariants) / sizeof(kVariants[0]),
                                            "QCOMPILE_SHIFT_KERNEL"};

// The table's choice, checked against the activation range: a range that could saturate
// vpmaddubsw keeps the exact portable kernel (no valid attributes reach this: int8 codes give
// at most 2 * 255 * 64 = 32640).
ShiftKernelChoice PickShiftKernel(const std::string& label, const Attrs& at,
                                  const shift::ActQuant& q) {
  ShiftKernelChoice c;
  const ShiftVariant& v = SelectVariant(kTable, label, KernelAttr(at), &c.forced);
  if (v.kernel == ShiftKernel::kAvx2 && shift::ShiftInt8Fits(q)) c.kernel = ShiftKernel::kAvx2;
  return c;
}

// Automatic choice only: with fewer than 8 output channels per group (depthwise-like layers)
// most of a 16-channel block would be padding, and the shift-and-add kernel is kept.
bool UseAvx2(const ShiftKernelChoice& c, int64_t Mg) {
  return c.kernel == ShiftKernel::kAvx2 && (c.forced || Mg >= 8);
}

// Test build only: which kernel computed D (ShiftKernelRuns).
void CountRun([[maybe_unused]] bool avx2) {
#ifdef QCOMPILE_TEST_HOOKS
  g_kernel_runs[avx2 ? 1 : 0].fetch_add(1, std::memory_order_relaxed);
#endif
}

// Per-thread scratch of the int8 path (im2col rows, accumulators), reused across tasks.
struct DotScratch {
  std::vector<uint8_t> rows;
  std::vector<int32_t> acc;
};
DotScratch& Scratch() {
  thread_local DotScratch s;
  return s;
}

// Y for rows [0, rows) of `u` (K4 bytes each) x channel blocks [b0, b1) of group g: D by
// DotTileAvx2, then WriteTile. Row r, channel j of the group land at y0[r*stride_r +
// (b*16 + j)*stride_m]; scale/bias start at the group's first channel.
void DotRows(const shift::PackedWeights& pw, int64_t depth, int64_t g, int64_t b0, int64_t b1,
             const uint8_t* u, int64_t rows, const float* sc, const float* bi, float* y0,
             int64_t stride_r, int64_t stride_m, int32_t* acc) {
  for (int64_t b = b0; b < b1; ++b) {
    shift::DotTileAvx2(u, pw.K4, rows, pw.Block(g, b), pw.K4, depth, acc);
    const int64_t j0 = b * shift::kDotBlockM;
    shift::WriteTile(acc, pw.corr.data() + g * pw.blocks * shift::kDotBlockM + j0, rows,
                     std::min(shift::kDotBlockM, pw.Mg - j0), sc + j0, bi + j0,
                     y0 + j0 * stride_m, stride_r, stride_m);
  }
}

// Channel blocks per task: all of a group's unless fewer than kMinTasks tasks would result.
int64_t BlocksPerTask(int64_t blocks, int64_t other_tasks) {
  if (other_tasks >= kMinTasks) return blocks;
  const int64_t splits = std::min(blocks, (kMinTasks + other_tasks - 1) / other_tasks);
  return (blocks + splits - 1) / splits;
}


// Thresholds: 1..7 floats, finite, > 0, strictly ascending.
void ParseThresholds(const Attrs& at, const std::string& label, const char* name,
                     shift::ActQuant* q) {
  const std::vector<float> t = at.Floats(name, {});
  auto fail = [&](const char* why) {
    std::ostringstream vals;
    for (size_t i = 0; i < t.size(); ++i) vals << (i ? ", " : "") << t[i];
    Fail(label, "attribute '", name, "': expected 1..", shift::kMaxLevels,
         " finite thresholds > 0 in strictly ascending order, got [", vals.str(), "] (", why,
         ")");
  };
  if (t.empty()) fail("missing or empty; it is required");
  if (t.size() > static_cast<size_t>(shift::kMaxLevels)) fail("too many");
  for (size_t i = 0; i < t.size(); ++i) {
    if (!std::isfinite(t[i]) || !(t[i] > 0.0f)) fail("not finite and > 0");
    if (i && !(t[i] > t[i - 1])) fail("not ascending");
  }
  q->pow2 = true;
  q->levels = static_cast<int>(t.size());
  std::copy(t.begin(), t.end(), q->thresholds);
  q->max_abs = int32_t{1} << (q->levels - 1);
  q->max_code = q->max_abs;
  q->min_code = -q->max_abs;
}

// act_mode and the attributes of that mode (SPEC, "Activation codes of ShiftConv / ShiftGemm");
// the other mode's attributes are ignored.
void ParseActQuant(const Attrs& at, const std::string& label, shift::ActQuant* q) {
  const std::string mode = at.String("act_mode", "");
  if (mode == "pow2") {
    ParseThresholds(at, label, "act_thresholds", q);
    return;
  }
  if (mode != "uniform")
    Fail(label, "attribute 'act_mode': expected 'pow2' or 'uniform', got '", mode, "'",
         mode.empty() ? " (missing; it is required)" : "");
  q->pow2 = false;
  const UniformQuantAttrs u = ParseUniformQuant(at, label, "act_", " with act_mode 'uniform'", 0.0f);
  q->scale = u.scale;
  q->zero_point = u.zero_point;
  q->rounding = u.rounding;
  q->qmin = u.qmin;
  q->qmax = u.qmax;
  // Every a = q - zero_point, q in [qmin, qmax], must be an int8.
  const double lo = static_cast<double>(q->qmin) - q->zero_point;
  const double hi = static_cast<double>(q->qmax) - q->zero_point;
  if (lo < -128.0 || hi > 127.0)
    Fail(label, "activation codes q - act_zero_point span [", lo, ", ", hi, "] (act_bitwidth ",
         u.bitwidth, ", act_signed ", u.is_signed, ", act_narrow ", u.narrow, ", act_zero_point ",
         q->zero_point, "), outside the int8 range [-128, 127]");
  q->max_abs = static_cast<int32_t>(std::max(std::fabs(lo), std::fabs(hi)));
  q->min_code = static_cast<int32_t>(lo);
  q->max_code = static_cast<int32_t>(hi);
}

// Worst case |D| = K * max|a| * 2^6 must stay below 2^31 (computed in double: no overflow).
void CheckRange(const std::string& label, double K, const char* what,
                const shift::ActQuant& q) {
  const double bound = K * std::max(1, q.max_abs) * static_cast<double>(1 << shift::kMaxExponent);
  if (bound > 2147483647.0)
    Fail(label, "the dot product can reach ", bound, " (", what, " = ", K, " terms, max |a| ",
         q.max_abs, ", max |w_int| ", 1 << shift::kMaxExponent,
         "), more than the int32 D holds");
}

// Quantizes x (count floats) into a on ORT's pool; fails naming the first NaN (uniform mode).
void QuantizeAll(OrtKernelContext* ctx, const std::string& label, const char* tensor,
                 const std::vector<int64_t>& xs, const shift::ActQuant& q, const float* x,
                 int64_t count, int8_t* a) {
  const int64_t tasks = (count + kChunk - 1) / kChunk;
  std::vector<int64_t> bad(static_cast<size_t>(tasks), -1);
  ParallelFor(ctx, static_cast<size_t>(tasks), [&](size_t t) {
    const int64_t b = static_cast<int64_t>(t) * kChunk;
    const int64_t e = std::min(b + kChunk, count);
    const int64_t i = shift::QuantizeActs(q, x + b, e - b, a + b);
    if (i >= 0) bad[t] = b + i;
  });
  for (int64_t i : bad)
    if (i >= 0)
      Fail(label, "input ", tensor, " ", ShapeStr(xs), ": element ", i,
           " is NaN, which has no uniform activation code");
}

void CheckAffine(const std::string& label, const F32Tensor& scale, const F32Tensor& bias,
                 int64_t M, const std::vector<int64_t>& ws) {
  CheckVector(label, "scale", scale.Shape(), M, "W is " + ShapeStr(ws));
  CheckVector(label, "bias", bias.Shape(), M, "W is " + ShapeStr(ws));
}

}  // namespace

const VariantTable<ShiftVariant>& ShiftVariants() { return kTable; }

const char* ShiftKernelName(ShiftKernel k) { return k == ShiftKernel::kAvx2 ? "avx2" : "portable"; }

#ifdef QCOMPILE_TEST_HOOKS
int64_t ShiftKernelRuns(const char* name) {
  if (!name) return -1;
  if (std::strcmp(name, "portable") == 0) return g_kernel_runs[0].load();
  if (std::strcmp(name, "avx2") == 0) return g_kernel_runs[1].load();
  return -1;
}
#endif

void ShiftConstWeights::Prepare(const OrtKernelInfo* info, int64_t G, int64_t Cg, int64_t KH,
                                int64_t KW, int32_t off) {
  const uint8_t* wdata = nullptr;
  std::vector<int64_t> ws;
  if (!ConstantInput(info, 1, &wdata, &ws)) return;
  // Only a shape Compute accepts is packed (Compute reports the others).
  if (ws.size() != 2 || ws[0] < 1 || ws[0] % G != 0 || ws[1] != (Cg * KH * KW + 1) / 2) return;
  src = wdata;
  shape = ws;
  packed = shift::PackWeights(src, ws[0], G, Cg, KH, KW, off);
}

// ---------------------------------------------------------------------------- Pow2Quant

Pow2QuantOp::Pow2QuantOp(const OrtApi* api, const OrtKernelInfo* info) noexcept {
  Construct(api, info, "qcompile::Pow2Quant", &label_, &init_error_, [&](const Attrs& at) {
    CheckNodeArity(api, info, label_, 1, 1);
    ParseThresholds(at, label_, "thresholds", &quant_);
  });
}

Ort::Status Pow2QuantOp::Compute(OrtKernelContext* ctx, const F32Tensor& x, F32Tensor& y) {
  return GuardCompute(label_, [&] {
    if (!init_error_.empty()) throw OpError(init_error_);
    const std::vector<int64_t>& xs = x.Shape();
    float* out = y.Allocate(xs);
    const int64_t count = NumElements(xs);
    if (count == 0) return;
    const float* in = x.Data();
    const shift::ActQuant q = quant_;
    const float step = std::ldexp(1.0f, -(q.levels - 1));  // 2^-(L-1), exact
    const int64_t tasks = (count + kChunk - 1) / kChunk;
    ParallelFor(ctx, static_cast<size_t>(tasks), [&](size_t t) {
      const int64_t b = static_cast<int64_t>(t) * kChunk;
      const int64_t e = std::min(b + kChunk, count);
      // the codes by ShiftConv's vectorized quantizer (the same Pow2Code), then a * 2^-(L-1)
      int8_t codes[kChunk];
      shift::QuantizeActs(q, in + b, e - b, codes);
      for (int64_t i = b; i < e; ++i) out[i] = static_cast<float>(codes[i - b]) * step;
    });
  });
}

// ---------------------------------------------------------------------------- ShiftConv

ShiftConvOp::ShiftConvOp(const OrtApi* api, const OrtKernelInfo* info) noexcept {
  Construct(api, info, "qcompile::ShiftConv", &label_, &init_error_, [&](const Attrs& at) {
    CheckNodeArity(api, info, label_, 4, 1);
    attrs_.Parse(at, label_, /*with_channels=*/true);
    ParseActQuant(at, label_, &quant_);
    CheckRange(label_,
               static_cast<double>(attrs_.in_channels / attrs_.group) *
                   static_cast<double>(attrs_.kernel_shape[0]) *
                   static_cast<double>(attrs_.kernel_shape[1]),
               "in_channels/group * KH * KW", quant_);
    kernel_ = PickShiftKernel(label_, at, quant_);
    if (kernel_.kernel == ShiftKernel::kAvx2)
      const_w_.Prepare(info, attrs_.group, attrs_.in_channels / attrs_.group,
                       attrs_.kernel_shape[0], attrs_.kernel_shape[1], shift::ActOffset(quant_));
  });
}

Ort::Status ShiftConvOp::Compute(OrtKernelContext* ctx, const F32Tensor& x, const U8Tensor& w,
                                 const F32Tensor& scale, const F32Tensor& bias, F32Tensor& y) {
  return GuardCompute(label_, [&] {
    if (!init_error_.empty()) throw OpError(init_error_);
    const std::vector<int64_t>& xs = x.Shape();
    const std::vector<int64_t>& ws = w.Shape();
    CheckRank(label_, "X", xs, 4, "[N, C, H, W]");
    CheckRank(label_, "W", ws, 2, "[M, ceil(Cg*KH*KW/2)]");
    shift::ConvShape s{};
    s.N = xs[0], s.C = xs[1], s.H = xs[2], s.W = xs[3];
    s.G = attrs_.group;
    s.Cg = attrs_.in_channels / attrs_.group;
    s.KH = attrs_.kernel_shape[0], s.KW = attrs_.kernel_shape[1];
    if (s.C != attrs_.in_channels)
      Fail(label_, "input X: expected C (dim 1) = in_channels = ", attrs_.in_channels,
           ", got shape ", ShapeStr(xs));
    s.M = ws[0];
    const int64_t K = s.Cg * s.KH * s.KW, row_bytes = (K + 1) / 2;
    if (s.M < 1 || s.M % s.G != 0)
      Fail(label_, "input W: expected M (dim 0) >= 1 and divisible by group ", s.G,
           ", got shape ", ShapeStr(ws));
    if (ws[1] != row_bytes)
      Fail(label_, "input W: expected shape [", s.M, ", ", row_bytes,
           "] ([M, ceil(Cg*KH*KW/2)] with Cg = ", s.Cg, ", KH = ", s.KH, ", KW = ", s.KW,
           "), got ", ShapeStr(ws));
    CheckAffine(label_, scale, bias, s.M, ws);
    s.Mg = s.M / s.G;
    s.sh = attrs_.strides[0], s.sw = attrs_.strides[1];
    s.pt = attrs_.pads[0], s.pl = attrs_.pads[1];
    s.dh = attrs_.dilations[0], s.dw = attrs_.dilations[1];
    attrs_.OutputSize(label_, xs, s.H, s.W, &s.OH, &s.OW);
    float* out = y.Allocate({s.N, s.M, s.OH, s.OW});
    if (s.N == 0) return;
    // 1. The whole input quantized once into int8 codes (an empty image has none: every tap
    // is padding, D = 0).
    std::vector<int8_t> a(static_cast<size_t>(NumElements(xs)));
    QuantizeAll(ctx, label_, "X", xs, quant_, x.Data(), static_cast<int64_t>(a.size()),
                a.data());
    const float* sc = scale.Data();
    const float* bi = bias.Data();
    if (UseAvx2(kernel_, s.Mg)) {
      CountRun(true);
      RunConvInt8(ctx, s, a.data(), w.Data(), ws, sc, bi, out);
      return;
    }
    CountRun(false);
    // 2. Weights decoded once per call into the non-zero (shift, sign) terms of each channel.
    const shift::DecodedWeights dw =
        shift::DecodeWeights(w.Data(), s.M, s.Cg, s.KH, s.KW, s.H, s.W);
    const std::vector<shift::ColRange> cols = shift::ColRanges(s);
    // 3. Tasks: (batch, block of output channels, output row).
    const int64_t blocks = (s.M + kConvBlockM - 1) / kConvBlockM;
    ParallelFor(ctx, static_cast<size_t>(s.N * blocks * s.OH), [&](size_t i) {
      int64_t t = static_cast<int64_t>(i);
      const int64_t oh = t % s.OH;
      t /= s.OH;
      const int64_t m0 = (t % blocks) * kConvBlockM;
      const int64_t n = t / blocks;
      std::vector<int32_t> acc(static_cast<size_t>(s.OW));
      shift::ShiftConvRow(s, a.data(), dw, cols.data(), sc, bi, n, m0,
                          std::min(m0 + kConvBlockM, s.M), oh, acc.data(), out);
    });
  });
}

// The int8 path (shift_avx2.cc): codes to offset NHWC bytes, then tasks of (image, group, chunk
// of kDotRows output pixels, range of 16-channel blocks), each im2col'ing its pixels once and
// running every block of its range over them.
void ShiftConvOp::RunConvInt8(OrtKernelContext* ctx, const shift::ConvShape& s, const int8_t* a,
                              const uint8_t* w, const std::vector<int64_t>& ws, const float* sc,
                              const float* bi, float* out) const {
  shift::PackedWeights local;
  const shift::PackedWeights* pw = const_w_.Get(w, ws);
  if (!pw) {
    local = shift::PackWeights(w, s.M, s.G, s.Cg, s.KH, s.KW, shift::ActOffset(quant_));
    pw = &local;
  }
  const int32_t off = pw->off;
  const int64_t depth = shift::Int16Depth(shift::MaxU(quant_), pw->max_w);
  std::vector<uint8_t> u(static_cast<size_t>(s.N * s.H * s.W * s.C));
  ParallelFor(ctx, static_cast<size_t>(s.N * s.H), [&](size_t i) {
    const int64_t t = static_cast<int64_t>(i);
    shift::ToOffsetNHWC(a, s.C, s.H, s.W, t / s.H, t % s.H, off, u.data());
  });
  const int64_t P = s.OH * s.OW, chunks = (P + kDotRows - 1) / kDotRows;
  const int64_t per = BlocksPerTask(pw->blocks, s.N * s.G * chunks);
  const int64_t splits = (pw->blocks + per - 1) / per;
  const int64_t K4 = pw->K4;
  ParallelFor(ctx, static_cast<size_t>(s.N * s.G * chunks * splits), [&](size_t i) {
    int64_t t = static_cast<int64_t>(i);
    const int64_t sp = t % splits;
    t /= splits;
    const int64_t ch = t % chunks;
    t /= chunks;
    const int64_t g = t % s.G, n = t / s.G;
    const int64_t p0 = ch * kDotRows, rows = std::min(kDotRows, P - p0);
    DotScratch& scr = Scratch();
    scr.rows.resize(static_cast<size_t>(kDotRows * K4));
    scr.acc.resize(static_cast<size_t>(kDotRows * shift::kDotBlockM));
    shift::ConvIm2colRows(s, u.data(), K4, n, g, p0, rows, off, scr.rows.data());
    const int64_t m0 = g * s.Mg;
    DotRows(*pw, depth, g, sp * per, std::min(pw->blocks, (sp + 1) * per), scr.rows.data(), rows,
            sc + m0, bi + m0, out + (n * s.M + m0) * P + p0, 1, P, scr.acc.data());
  });
}

// ---------------------------------------------------------------------------- ShiftGemm

ShiftGemmOp::ShiftGemmOp(const OrtApi* api, const OrtKernelInfo* info) noexcept {
  Construct(api, info, "qcompile::ShiftGemm", &label_, &init_error_, [&](const Attrs& at) {
    CheckNodeArity(api, info, label_, 4, 1);
    in_features_ = at.Int("in_features", -1);
    if (in_features_ < 1 || in_features_ > kMaxAttr)
      Fail(label_, "attribute 'in_features': expected 1..", kMaxAttr, ", got ", in_features_,
           in_features_ == -1 ? " (missing; it is required)" : "");
    ParseActQuant(at, label_, &quant_);
    CheckRange(label_, static_cast<double>(in_features_), "in_features", quant_);
    kernel_ = PickShiftKernel(label_, at, quant_);
    if (kernel_.kernel == ShiftKernel::kAvx2)
      const_w_.Prepare(info, 1, in_features_, 1, 1, shift::ActOffset(quant_));
  });
}

Ort::Status ShiftGemmOp::Compute(OrtKernelContext* ctx, const F32Tensor& x, const U8Tensor& w,
                                 const F32Tensor& scale, const F32Tensor& bias, F32Tensor& y) {
  return GuardCompute(label_, [&] {
    if (!init_error_.empty()) throw OpError(init_error_);
    const std::vector<int64_t>& xs = x.Shape();
    const std::vector<int64_t>& ws = w.Shape();
    CheckRank(label_, "X", xs, 2, "[N, K]");
    CheckRank(label_, "W", ws, 2, "[M, ceil(K/2)]");
    const int64_t N = xs[0], K = in_features_, M = ws[0], row_bytes = (K + 1) / 2;
    if (xs[1] != K)
      Fail(label_, "input X: expected shape [N, ", K, "] (in_features ", K, "), got ",
           ShapeStr(xs));
    if (M < 1 || ws[1] != row_bytes)
      Fail(label_, "input W: expected shape [M, ", row_bytes,
           "] ([M, ceil(in_features/2)]) with M >= 1, got ", ShapeStr(ws));
    CheckAffine(label_, scale, bias, M, ws);
    float* out = y.Allocate({N, M});
    if (N == 0) return;
    std::vector<int8_t> a(static_cast<size_t>(N * K));
    QuantizeAll(ctx, label_, "X", xs, quant_, x.Data(), N * K, a.data());
    const float* sc = scale.Data();
    const float* bi = bias.Data();
    if (UseAvx2(kernel_, M)) {
      CountRun(true);
      RunGemmInt8(ctx, N, K, M, a.data(), w.Data(), ws, sc, bi, out);
      return;
    }
    CountRun(false);
    const shift::DecodedWeights dw = shift::DecodeWeights(w.Data(), M, K, 1, 1, 1, 1);
    const int64_t blocks = (M + kGemmBlockM - 1) / kGemmBlockM;
    ParallelFor(ctx, static_cast<size_t>(N * blocks), [&](size_t i) {
      const int64_t n = static_cast<int64_t>(i) / blocks;
      const int64_t m0 = (static_cast<int64_t>(i) % blocks) * kGemmBlockM;
      shift::ShiftGemmRow(a.data(), K, M, dw, sc, bi, n, m0, std::min(m0 + kGemmBlockM, M), out);
    });
  });
}

// The int8 path: rows of kDotRows batch rows (offset codes, K4 bytes each) x ranges of
// 16-channel blocks.
void ShiftGemmOp::RunGemmInt8(OrtKernelContext* ctx, int64_t N, int64_t K, int64_t M,
                              const int8_t* a, const uint8_t* w, const std::vector<int64_t>& ws,
                              const float* sc, const float* bi, float* out) const {
  shift::PackedWeights local;
  const shift::PackedWeights* pw = const_w_.Get(w, ws);
  if (!pw) {
    local = shift::PackWeights(w, M, 1, K, 1, 1, shift::ActOffset(quant_));
    pw = &local;
  }
  const int64_t K4 = pw->K4;
  const int32_t off = pw->off;
  const int64_t depth = shift::Int16Depth(shift::MaxU(quant_), pw->max_w);
  std::vector<uint8_t> u(static_cast<size_t>(N * K4), static_cast<uint8_t>(off));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k)
      u[static_cast<size_t>(n * K4 + k)] = static_cast<uint8_t>(a[n * K + k] + off);
  const int64_t chunks = (N + kDotRows - 1) / kDotRows;
  const int64_t per = BlocksPerTask(pw->blocks, chunks);
  const int64_t splits = (pw->blocks + per - 1) / per;
  ParallelFor(ctx, static_cast<size_t>(chunks * splits), [&](size_t i) {
    const int64_t sp = static_cast<int64_t>(i) % splits, ch = static_cast<int64_t>(i) / splits;
    const int64_t n0 = ch * kDotRows, rows = std::min(kDotRows, N - n0);
    DotScratch& scr = Scratch();
    scr.acc.resize(static_cast<size_t>(kDotRows * shift::kDotBlockM));
    DotRows(*pw, depth, 0, sp * per, std::min(pw->blocks, (sp + 1) * per), u.data() + n0 * K4, rows, sc,
            bi, out + n0 * M, M, 1, scr.acc.data());
  });
}

void ParsePow2Thresholds(const Attrs& at, const std::string& label, const char* name,
                         shift::ActQuant* q) {
  ParseThresholds(at, label, name, q);
}

}  // namespace qcompile
