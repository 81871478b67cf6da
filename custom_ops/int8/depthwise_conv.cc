#include "depthwise_conv.h"

#include <algorithm>
#include <limits>
#include <vector>

#include "../common/cpu_features.h"
#include "../common/phases.h"
#include "codes.h"
#include "epilogue_checks.h"

namespace qcompile {
namespace {

const DepthwiseVariant kVariants[] = {
#ifdef QCOMPILE_HAVE_AVX512VNNI
    {{"avx512vnni", "avx512f avx512bw avx512vnni", isa::Avx512Vnni}, DepthwiseSumVnni},
#endif
#ifdef QCOMPILE_HAVE_AVX2
    {{"avx2", "avx2", isa::Avx2}, DepthwiseSumAvx2},
#endif
    {{"portable", "", isa::None}, DepthwiseSumPortable},
};
constexpr VariantTable<DepthwiseVariant> kTable{kVariants, sizeof(kVariants) / sizeof(kVariants[0]),
                                                "QCOMPILE_DW_KERNEL"};

// Channels per parallel task are grouped so each task has at least this many outputs.
constexpr int64_t kMinTaskOutputs = 1 << 12;

}  // namespace

const VariantTable<DepthwiseVariant>& DepthwiseVariants() { return kTable; }

void DepthwiseSumPortable(const dw::Geometry& g, const int64_t* runs, const int16_t* phases,
                          const int32_t* wv, int32_t* acc) {
  dw::SumChannel(g, runs, phases, wv, acc);
}

namespace {

// What both ops share: the checks of x, w and the zero points against the attributes, the
// geometry, and the per-channel sums, handed to `sink(n, c, acc)` with acc the channel's flat
// [OH, Q] outputs (columns OW.. scratch) as dw::SumChannel leaves them.
struct DepthwiseRun {
  int64_t N = 0, C = 0, H = 0, W = 0, OH = 0, OW = 0;
  int64_t KH = 0, KW = 0, sh = 1, sw = 1, dh = 1, dw = 1, pt = 0, pl = 0;
  dw::Geometry g{};
};

DepthwiseRun PlanDepthwise(const std::string& label, const ConvAttrs& a, int64_t group,
                           const std::vector<int64_t>& xs, const std::vector<int64_t>& ws,
                           const std::vector<int64_t>& xzs, const std::vector<int64_t>& wzs) {
  CheckRank(label, "x", xs, 4, "[N, C, H, W]");
  CheckRank(label, "w", ws, 4, "[C, 1, KH, KW]");
  DepthwiseRun r;
  r.N = xs[0], r.C = xs[1], r.H = xs[2], r.W = xs[3];
  if (group != r.C)
    Fail(label, "attribute 'group': expected the input's channel count ", r.C,
         " (a depthwise conv), got ", group);
  if (ws[0] != r.C || ws[1] != 1 || ws[2] != a.kernel_shape[0] || ws[3] != a.kernel_shape[1])
    Fail(label, "input w: expected [", r.C, ", 1, ", a.kernel_shape[0], ", ", a.kernel_shape[1],
         "] (C from input x ", ShapeStr(xs), ", kernel_shape), got ", ShapeStr(ws));
  if (NumElements(xzs) != 1 || NumElements(wzs) != 1)
    Fail(label, "inputs x_zero_point, w_zero_point: expected scalars (per tensor), got shapes ",
         ShapeStr(xzs), ", ", ShapeStr(wzs));
  a.OutputSize(label, xs, r.H, r.W, &r.OH, &r.OW);
  r.KH = a.kernel_shape[0], r.KW = a.kernel_shape[1];
  r.sh = a.strides[0], r.sw = a.strides[1], r.dh = a.dilations[0], r.dw = a.dilations[1];
  r.pt = a.pads[0], r.pl = a.pads[1];
  const int64_t Hp = r.H + r.pt + a.pads[2], Wp = r.W + r.pl + a.pads[3];
  r.g = {r.OH, r.OW, r.KH * r.KW, (Hp + r.sh - 1) / r.sh, (Wp + r.sw - 1) / r.sw};
  return r;
}

template <typename TX, typename TW, typename Sink>
void RunDepthwise(OrtKernelContext* ctx, const DepthwiseRun& r, dw::SumChannelFn sum,
                  const TX* xd, const TW* wd, int32_t xzp, int32_t wzp, const Sink& sink) {
  const dw::Geometry& g = r.g;
  const int64_t H = r.H, W = r.W, C = r.C, sh = r.sh, sw = r.sw, taps = g.taps;
  std::vector<int64_t> row_phases, col_phases, row_plane, col_plane;
  UsedPhases(r.KH, r.dh, sh, &row_phases, &row_plane);
  UsedPhases(r.KW, r.dw, sw, &col_phases, &col_plane);
  const int64_t n_cols = static_cast<int64_t>(col_phases.size());
  const int64_t planes = static_cast<int64_t>(row_phases.size()) * n_cols;
  std::vector<int64_t> runs(static_cast<size_t>(taps));
  for (int64_t kh = 0; kh < r.KH; ++kh)
    for (int64_t kw = 0; kw < r.KW; ++kw)
      runs[kh * r.KW + kw] = (row_plane[kh] * n_cols + col_plane[kw]) * g.PlaneSize() +
                             kh * r.dh / sh * g.Q + kw * r.dw / sw;
  // where each input row starts in the first plane of its row phase; -1: no tap reads the row
  std::vector<int64_t> row_at(static_cast<size_t>(H), -1);
  for (int64_t h = 0; h < H; ++h) {
    const auto it = std::find(row_phases.begin(), row_phases.end(), (h + r.pt) % sh);
    if (it != row_phases.end())
      row_at[h] = (it - row_phases.begin()) * n_cols * g.PlaneSize() + (h + r.pt) / sh * g.Q;
  }
  std::vector<int64_t> first_j(static_cast<size_t>(n_cols)), first_col(static_cast<size_t>(n_cols));
  for (int64_t ci = 0; ci < n_cols; ++ci) {
    // phase column j holds padded column j sw + cp, i.e. input column j sw + cp - pl
    const int64_t cp = col_phases[ci];
    first_j[ci] = r.pl > cp ? (r.pl - cp + sw - 1) / sw : 0;
    first_col[ci] = first_j[ci] * sw + cp - r.pl;
  }
  const int64_t outputs = r.OH * r.OW;
  const int64_t per_task = outputs >= kMinTaskOutputs ? 1 : (kMinTaskOutputs + outputs - 1) / outputs;
  const int64_t blocks = (C + per_task - 1) / per_task;
  ParallelFor(ctx, static_cast<size_t>(r.N * blocks), [&](size_t t) {
    const int64_t n = static_cast<int64_t>(t) / blocks;
    const int64_t c0 = static_cast<int64_t>(t) % blocks * per_task;
    // the padding holds x_zero_point's code, 0 after the shift, and every channel writes the
    // same interior positions: the planes are zeroed once per task
    std::vector<int16_t> phases(static_cast<size_t>(planes * g.PlaneSize()), int16_t{0});
    std::vector<int32_t> wv(static_cast<size_t>(taps));
    std::vector<int32_t> acc(static_cast<size_t>(g.Run()));
    for (int64_t c = c0; c < c0 + per_task && c < C; ++c) {
      const TX* plane = xd + (n * C + c) * H * W;
      for (int64_t h = 0; h < H; ++h) {
        if (row_at[h] < 0) continue;
        const TX* src = plane + h * W;
        if (sw == 1) {  // one phase: a contiguous row (vectorized)
          int16_t* dst = phases.data() + row_at[h] + r.pl;
          for (int64_t col = 0; col < W; ++col) dst[col] = static_cast<int16_t>(int32_t{src[col]} - xzp);
          continue;
        }
        for (int64_t ci = 0; ci < n_cols; ++ci) {
          int16_t* dst = phases.data() + row_at[h] + ci * g.PlaneSize();
          for (int64_t j = first_j[ci], col = first_col[ci]; col < W; ++j, col += sw)
            dst[j] = static_cast<int16_t>(int32_t{src[col]} - xzp);
        }
      }
      for (int64_t i = 0; i < taps; ++i) wv[i] = int32_t{wd[c * taps + i]} - wzp;
      sum(g, runs.data(), phases.data(), wv.data(), acc.data());
      sink(n, c, acc.data());
    }
  });
}

}  // namespace

void DepthwiseConvState::Init(const Attrs& at, const std::string& label) {
  attrs_.Parse(at, label, /*with_channels=*/false);
  group_ = at.Int("group", -1);
  if (group_ < 1)
    Fail(label, "attribute 'group': expected the channel count (depthwise), got ", group_,
         group_ == -1 ? " (missing; it is required)" : "");
  sum_ = SelectVariant(kTable, label, KernelAttr(at)).sum;
}

template <typename TX, typename TW>
DepthwiseConvIntegerOp<TX, TW>::DepthwiseConvIntegerOp(const OrtApi* api,
                                                       const OrtKernelInfo* info) noexcept {
  try {
    label_ = OpLabel(api, info, "qcompile::DepthwiseConvInteger");
    CheckNodeArity(api, info, label_, 4, 1);
    Init(Attrs(api, info, label_), label_);
  } catch (const std::exception& e) {
    init_error_ = e.what();
  }
}

template <typename TX, typename TW>
Ort::Status DepthwiseConvIntegerOp<TX, TW>::Compute(OrtKernelContext* ctx,
                                                    const Tensor<TX>& x,
                                                    const Tensor<TW>& w,
                                                    const Tensor<TX>& x_zero_point,
                                                    const Tensor<TW>& w_zero_point,
                                                    Tensor<int32_t>& y) {
  return GuardCompute(label_, [&] {
    if (!init_error_.empty()) throw OpError(init_error_);
    const DepthwiseRun r = PlanDepthwise(label_, attrs_, group_, x.Shape(), w.Shape(),
                                         x_zero_point.Shape(), w_zero_point.Shape());
    int32_t* out = y.Allocate({r.N, r.C, r.OH, r.OW});
    if (r.N * r.C * r.OH * r.OW == 0) return;
    const int64_t Q = r.g.Q, OH = r.OH, OW = r.OW;
    RunDepthwise(ctx, r, sum_, x.Data(), w.Data(), int32_t{x_zero_point.Data()[0]},
                 int32_t{w_zero_point.Data()[0]}, [&](int64_t n, int64_t c, const int32_t* acc) {
                   int32_t* dst = out + (n * r.C + c) * OH * OW;
                   for (int64_t oh = 0; oh < OH; ++oh)
                     std::copy(acc + oh * Q, acc + oh * Q + OW, dst + oh * OW);
                 });
  });
}

template <typename TX, typename TW, typename TY>
DepthwiseConvRequantizeOp<TX, TW, TY>::DepthwiseConvRequantizeOp(const OrtApi* api,
                                                                 const OrtKernelInfo* info) noexcept {
  try {
    label_ = OpLabel(api, info, "qcompile::DepthwiseConvRequantize");
    CheckNodeArity(api, info, label_, 8, 1);
    Attrs at(api, info, label_);
    Init(at, label_);
    ParseCodeBounds<TY>(at, label_, &lo_, &hi_);
    codes_ = &SelectVariant(CodesVariants(), label_, "");
  } catch (const std::exception& e) {
    init_error_ = e.what();
  }
}

template <typename TX, typename TW, typename TY>
Ort::Status DepthwiseConvRequantizeOp<TX, TW, TY>::Compute(
    OrtKernelContext* ctx, const Tensor<TX>& x, const Tensor<TW>& w,
    const Tensor<TX>& x_zero_point, const Tensor<TW>& w_zero_point,
    const Tensor<float>& scale, const Tensor<float>& bias,
    const Tensor<float>& y_scale, const Tensor<TY>& y_zero_point,
    Tensor<TY>& y) {
  return GuardCompute(label_, [&] {
    if (!init_error_.empty()) throw OpError(init_error_);
    const DepthwiseRun r = PlanDepthwise(label_, attrs_, group_, x.Shape(), w.Shape(),
                                         x_zero_point.Shape(), w_zero_point.Shape());
    const int64_t C = r.C;
    const float* ys = y_scale.Data();
    CheckEpilogueInputs(label_, C, "", scale.Shape(), bias.Shape(), y_scale.Shape(),
                        y_zero_point.Shape(), ys);
    const int64_t n_ys = NumElements(y_scale.Shape());
    TY* out = y.Allocate({r.N, C, r.OH, r.OW});
    if (r.N * C * r.OH * r.OW == 0) return;
    const int64_t ys_step = n_ys == 1 ? 0 : 1;
    const int32_t zp = static_cast<int32_t>(y_zero_point.Data()[0]);
    const float lo_f = static_cast<float>(lo_ - zp), hi_f = static_cast<float>(hi_ - zp);
    const float *s = scale.Data(), *b = bias.Data();
    const int64_t Q = r.g.Q, OH = r.OH, OW = r.OW, n_flat = r.g.Run();
    RunDepthwise(ctx, r, sum_, x.Data(), w.Data(), int32_t{x_zero_point.Data()[0]},
                 int32_t{w_zero_point.Data()[0]}, [&](int64_t n, int64_t c, const int32_t* acc) {
                   // the codes of the whole flat run (no scalar tail: Run() rounds up), then the rows
                   thread_local std::vector<TY> codes;
                   codes.resize(static_cast<size_t>(n_flat));
                   CodesRowOf<TY>(*codes_)(Codes{s[c], b[c], ys[c * ys_step], lo_f, hi_f, zp}, acc, n_flat,
                                codes.data());
                   TY* dst = out + (n * C + c) * OH * OW;
                   for (int64_t oh = 0; oh < OH; ++oh)
                     std::copy(codes.data() + oh * Q, codes.data() + oh * Q + OW, dst + oh * OW);
                 });
  });
}

template struct DepthwiseConvIntegerOp<int8_t, int8_t>;
template struct DepthwiseConvIntegerOp<int8_t, uint8_t>;
template struct DepthwiseConvIntegerOp<uint8_t, int8_t>;
template struct DepthwiseConvIntegerOp<uint8_t, uint8_t>;
template struct DepthwiseConvRequantizeOp<int8_t, int8_t, int8_t>;
template struct DepthwiseConvRequantizeOp<int8_t, int8_t, uint8_t>;
template struct DepthwiseConvRequantizeOp<int8_t, uint8_t, int8_t>;
template struct DepthwiseConvRequantizeOp<int8_t, uint8_t, uint8_t>;
template struct DepthwiseConvRequantizeOp<uint8_t, int8_t, int8_t>;
template struct DepthwiseConvRequantizeOp<uint8_t, int8_t, uint8_t>;
template struct DepthwiseConvRequantizeOp<uint8_t, uint8_t, int8_t>;
template struct DepthwiseConvRequantizeOp<uint8_t, uint8_t, uint8_t>;

}  // namespace qcompile
