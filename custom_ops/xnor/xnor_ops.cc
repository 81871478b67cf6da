#include "xnor_ops.h"
#include "tap_concat.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace qcompile {
namespace {

// Output-channel blocks per parallel task (4 blocks = 32 channels).
constexpr int64_t kChunkBlocks = 4;

}  // namespace

// Weights in the variant's layout (xnor_kernel.h, ConvArgs::wb) from W [M, taps] where
// taps = KH*KW*Wg words per output channel; empty for kWeightsPlain.
std::vector<uint64_t> LayoutWeights(xnor::WeightLayout layout, const uint64_t* w, int64_t M,
                                    int64_t G, int64_t taps) {
  std::vector<uint64_t> blocked;
  if (layout == xnor::kWeightsPlain) return blocked;
  const bool nib = layout == xnor::kWeightsBlockedNibbles;
  const int64_t Mg = M / G;
  const int64_t blocks_per_group = (Mg + xnor::kBlockM - 1) / xnor::kBlockM;
  const int64_t per_tap = xnor::kBlockM * (nib ? 2 : 1);
  blocked.assign(static_cast<size_t>(G * blocks_per_group * taps * per_tap), 0);
  for (int64_t m = 0; m < M; ++m) {
    const int64_t g = m / Mg, b = (m % Mg) / xnor::kBlockM, j = (m % Mg) % xnor::kBlockM;
    const uint64_t* src = w + m * taps;
    uint64_t* dst = blocked.data() + (g * blocks_per_group + b) * taps * per_tap + j;
    for (int64_t t = 0; t < taps; ++t) {
      if (nib) {
        dst[t * per_tap] = src[t] & xnor::kLowNibbles;
        dst[t * per_tap + xnor::kBlockM] = (src[t] >> 4) & xnor::kLowNibbles;
      } else {
        dst[t * per_tap] = src[t];
      }
    }
  }
  return blocked;
}

namespace {

// ---------------------------------------------------------------------------- tap concatenation
// Few channels per group leave most of a word as pad bits (16 channels: 48 of 64), and every
// popcount does a word's work for Cg useful bits. When it saves words, the KW taps of a kernel
// row are concatenated into one bit vector of KW*Cg bits (tap kw at bit kw*Cg):
//   X [N, H, W, G*Wg] -> X2 [N, H, OW, G*Wg2], column ow of X2 holding input columns
//     iw = ow*sw - pl + kw*dw (kw < KW), zero bits where iw is outside the image;
//   W [M, KH, KW, Wg] -> W2 [M, KH, 1, Wg2],       Wg2 = ceil(KW*Cg/64),
// and the fast kernels run the KH x 1 convolution of X2 by W2 (stride sw 1, no horizontal pad)
// over Wg2 words per kernel row instead of KW*Wg. Inside the image this is the same sum of
// popcount(x ^ w). A tap outside the image adds 0 to D (SPEC), but in the concatenated vector its
// activation bits are 0, so x ^ w = w there and the kernel's D is off by
//   Cg*(taps outside) - 2*popcount(W of the taps outside)  per in-bounds kernel row,
// which depends only on the output column's edge pattern and the channel: the kernel adds the
// correction for edge columns from a small table (ConvArgs::edge_corr). Exact: only valid bits
// are moved, and the path is taken only when W's and X's pad bits are 0 (as SPEC requires; with
// a pad bit set the direct kernels would count it, so the result could differ).

std::atomic<uint64_t> g_tap_concat_runs{0};

// Words a kernel row takes, concatenated vs one tap at a time: by default the path is taken
// when it at least halves them (16 channels, 3x3: 1 word vs 3). Saving less (32 channels: 2 vs
// 3) does not pay for the concatenated copy of X; QCOMPILE_XNOR_TAP_CONCAT=force takes it
// whenever it saves a word (tests), =0 never.
bool TapConcatApplies(const xnor::ConvGeometry& s, int mode) {
  if (mode == kTapConcatOff || s.KW < 2 || s.KW * s.Cg >= (int64_t{1} << 24)) return false;
  const int64_t words = Words(s.KW * s.Cg), direct = s.KW * s.Wg;
  return mode == kTapConcatForce ? words < direct : 2 * words <= direct;
}


// The edge corrections (ConvArgs::edge_corr) for geometry s; sets a->edge_a / edge_b.
std::vector<int32_t> TapConcatEdges(const xnor::ConvGeometry& s, const int32_t* tap_pop,
                                    xnor::ConvArgs* a) {
  // Output columns whose window lies inside the image: the same split as ConvRowBlocked's.
  int64_t ow_a, ow_b;
  xnor::InteriorColumns(s, &ow_a, &ow_b);
  a->edge_a = ow_a;
  a->edge_b = ow_b;
  const int64_t E = ow_a + s.OW - ow_b, stride = s.KH + 1;
  std::vector<int32_t> corr(static_cast<size_t>(E * s.M * stride), 0);
  for (int64_t e = 0; e < E; ++e) {
    const int64_t ow = e < ow_a ? e : ow_b + (e - ow_a);
    const int64_t iw0 = ow * s.sw - s.pl;
    for (int64_t m = 0; m < s.M; ++m) {
      int32_t* c = corr.data() + (e * s.M + m) * stride;
      for (int64_t kh = 0; kh < s.KH; ++kh) {
        int64_t v = 0;
        for (int64_t kw = 0; kw < s.KW; ++kw) {
          const int64_t iw = iw0 + kw * s.dw;
          if (iw >= 0 && iw < s.W) continue;
          v += 2 * tap_pop[(m * s.KH + kh) * s.KW + kw] - s.Cg;
        }
        c[kh + 1] = static_cast<int32_t>(c[kh] + v);
      }
    }
  }
  return corr;
}

// Runs the kernel on args (geometry, operands and weights in the variant's layout all set) over
// (batch x group x 32-channel chunk x output row) tasks on ORT's intra-op pool.
void RunTasks(OrtKernelContext* ctx, const xnor::XnorVariant& v, xnor::ConvArgs& args) {
  const xnor::ConvGeometry& s = args.geo;
  std::vector<uint64_t> split;
  if (v.split_x) {
    const int64_t words = s.N * s.H * s.W * s.XW;
    split.resize(static_cast<size_t>(2 * words));
    for (int64_t i = 0; i < words; ++i) {
      split[2 * i] = args.x[i] & xnor::kLowNibbles;
      split[2 * i + 1] = (args.x[i] >> 4) & xnor::kLowNibbles;
    }
    args.xs = split.data();
  }
  const int64_t chunks = (s.blocks_per_group + kChunkBlocks - 1) / kChunkBlocks;
  const int64_t total = s.N * s.G * chunks * s.OH;
  const xnor::ConvRowFn fn = v.conv;
  auto task = [&args, fn, chunks, &s](size_t i) {
    int64_t t = static_cast<int64_t>(i);
    const int64_t oh = t % s.OH;
    t /= s.OH;
    const int64_t c = t % chunks;
    t /= chunks;
    const int64_t g = t % s.G;
    const int64_t n = t / s.G;
    const int64_t b0 = c * kChunkBlocks;
    const int64_t b1 = std::min(b0 + kChunkBlocks, s.blocks_per_group);
    fn(args, n, g, b0, b1, oh);
  };
  ParallelFor(ctx, static_cast<size_t>(total), task);
}

// The tap-concatenated run (see above); false, having run nothing, when it does not apply
// (the convolution does not qualify, the variant reads plain weights, or a pad bit is set).
bool RunTapConcat(OrtKernelContext* ctx, const xnor::XnorVariant& v, xnor::ConvArgs args,
                  const ConcatWeights* prepared, int mode) {
  const xnor::ConvGeometry& s = args.geo;
  if (v.weights == xnor::kWeightsPlain || !TapConcatApplies(s, mode)) return false;
  std::vector<uint64_t> w2, laid_out;
  std::vector<int32_t> pop;
  const uint64_t* wb = nullptr;
  const int32_t* tap_pop = nullptr;
  if (prepared) {
    wb = prepared->laid_out.data();
    tap_pop = prepared->tap_pop.data();
  } else {
    if (!tapconcat::ConcatWeights(s, 1, args.w, &w2, &pop)) return false;
    laid_out = LayoutWeights(v.weights, w2.data(), s.M, s.G, s.KH * Words(s.KW * s.Cg));
    wb = laid_out.data();
    tap_pop = pop.data();
  }
  const xnor::ConvGeometry c = tapconcat::ConcatGeometry(s, s.G);
  std::vector<uint64_t> x2(static_cast<size_t>(c.N * c.H * c.W * c.XW));
  if (!tapconcat::ConcatActivations(s, s.G, args.x, x2.data())) return false;
  const std::vector<int32_t> edges = TapConcatEdges(s, tap_pop, &args);
  args.edge_corr = edges.empty() ? nullptr : edges.data();
  args.geo = c;
  args.x = x2.data();
  args.w = nullptr;  // only the laid-out weights are valid for the concatenated geometry
  args.wb = wb;
  g_tap_concat_runs.fetch_add(1, std::memory_order_relaxed);
  RunTasks(ctx, v, args);
  return true;
}

// Runs the selected kernel: the variant's table-lookup kernel when `lut` (the op's setting)
// chooses it, else tap-concatenated when `concat` (the op's setting) and it applies, else
// directly; a forced tap concatenation (tests of that path) goes before the LUT kernel.
// Weights are laid out here, per call, unless prepared at kernel creation.
void RunConv(OrtKernelContext* ctx, const xnor::XnorVariant& v, xnor::ConvArgs args,
             const ConstWeights* prepared, int concat = kTapConcatOff,
             const ConcatWeights* concat_prepared = nullptr, const LutState* lut = nullptr) {
  if (concat == kTapConcatForce && RunTapConcat(ctx, v, args, concat_prepared, concat)) return;
  if (lut && v.lut && lut::LutChosen(lut->use, v.lut_faster, args.geo, 1)) {
    lut::LutTables scratch;
    const lut::LutTables* t =
        lut->cache->Get(args.geo, lut::LutOperands{}, args.w, prepared != nullptr, &scratch);
    if (t && lut::RunLut(ctx, v.lut, args.geo, 1, *t, args.x, args.scale, args.bias, args.y,
                         args.d))
      return;
  }
  if (RunTapConcat(ctx, v, args, concat_prepared, concat)) return;
  const xnor::ConvGeometry& s = args.geo;
  std::vector<uint64_t> blocked;
  if (v.weights != xnor::kWeightsPlain) {
    if (prepared) {
      args.wb = prepared->laid_out.data();
    } else {
      blocked = LayoutWeights(v.weights, args.w, s.M, s.G, s.KH * s.KW * s.Wg);
      args.wb = blocked.data();
    }
  }
  RunTasks(ctx, v, args);
}

}  // namespace

int TapConcatMode() {
  const char* e = std::getenv("QCOMPILE_XNOR_TAP_CONCAT");
  if (e && std::strcmp(e, "0") == 0) return kTapConcatOff;
  if (e && std::strcmp(e, "force") == 0) return kTapConcatForce;
  return kTapConcatAuto;
}

void ConcatWeights::Prepare(const OrtKernelInfo* info, const xnor::XnorVariant* v,
                            const ConvAttrs& a, int mode) {
  if (!v || v->weights == xnor::kWeightsPlain) return;
  const uint64_t* wdata = nullptr;
  std::vector<int64_t> ws;
  if (!ConstantInput(info, 1, &wdata, &ws)) return;
  xnor::ConvGeometry s = tapconcat::AttrGeometry(a);
  // Compute checks the shape; only one it can accept is prepared.
  if (ws.size() != 4 || ws[0] < 1 || ws[0] % s.G != 0 || ws[1] != s.KH || ws[2] != s.KW ||
      ws[3] != s.Wg || !TapConcatApplies(s, mode))
    return;
  s.M = ws[0];
  std::vector<uint64_t> w2;
  std::vector<int32_t> pop;
  if (!tapconcat::ConcatWeights(s, 1, wdata, &w2, &pop)) return;
  src = wdata;
  shape = ws;
  laid_out = LayoutWeights(v->weights, w2.data(), s.M, s.G, s.KH * Words(s.KW * s.Cg));
  tap_pop = std::move(pop);
}

lut::LutUse LutUseFor(const xnor::XnorVariant* v) {
  if (!v) return lut::kLutOff;
  const char* e = std::getenv("QCOMPILE_LUT");
  if (v->lut_use == lut::kLutWhenFaster && e && std::strcmp(e, "0") == 0) return lut::kLutOff;
  return v->lut_use;
}

const xnor::XnorVariant* PickVariant(const std::string& label, std::string* init_error) {
  std::string err;
  const xnor::XnorVariant* v = xnor::SelectVariant(&err);
  if (!v) *init_error = label + ": " + err;
  return v;
}

void ConstWeights::Prepare(const OrtKernelInfo* info, xnor::WeightLayout layout, int64_t group) {
  if (layout == xnor::kWeightsPlain) return;
  const uint64_t* wdata = nullptr;
  std::vector<int64_t> ws;
  if (!ConstantInput(info, 1, &wdata, &ws)) return;
  if (ws.empty() || ws[0] < 1 || ws[0] % group != 0) return;  // Compute reports the error
  int64_t taps = 1;
  for (size_t i = 1; i < ws.size(); ++i) taps *= ws[i];
  src = wdata;
  shape = ws;
  laid_out = LayoutWeights(layout, src, ws[0], group, taps);
}

// ---------------------------------------------------------------------------- BinarizePack

BinarizePackOp::BinarizePackOp(const OrtApi* api, const OrtKernelInfo* info) noexcept {
  Construct(api, info, "qcompile::BinarizePack", &label_, &init_error_, [&](const Attrs& at) {
    CheckNodeArity(api, info, label_, 1, 1);
    group_ = at.Int("group", 1);
    if (group_ < 1) Fail(label_, "attribute 'group': expected >= 1, got ", group_);
  });
}

Ort::Status BinarizePackOp::Compute(OrtKernelContext* ctx, const F32Tensor& x, U64Tensor& y) {
  return GuardCompute(label_, [&] {
    if (!init_error_.empty()) throw OpError(init_error_);
    const std::vector<int64_t>& xs = x.Shape();
    if (xs.size() == 2) {
      if (group_ != 1)
        Fail(label_, "attribute 'group': rank-2 input X ", ShapeStr(xs),
             " requires group 1, got ", group_);
      const int64_t N = xs[0], K = xs[1], Kw = Words(K);
      if (K < 1) Fail(label_, "input X: expected K >= 1, got shape ", ShapeStr(xs));
      uint64_t* out = y.Allocate({N, Kw});
      const float* in = x.Data();
      ParallelFor(ctx, static_cast<size_t>(N), [&](size_t i) {
        const int64_t n = static_cast<int64_t>(i);
        uint64_t* o = out + n * Kw;
        std::memset(o, 0, static_cast<size_t>(Kw) * sizeof(uint64_t));
        const float* xi = in + n * K;
        // Branch-free: the sign of real data is unpredictable, and a mispredicted branch per
        // element costs more than the whole pack.
        for (int64_t k = 0; k < K; ++k)
          o[k / kWordBits] |= static_cast<uint64_t>(!(xi[k] >= 0.0f)) << (k % kWordBits);
      });
      return;
    }
    if (xs.size() != 4)
      Fail(label_, "input X: expected rank 2 [N, K] or rank 4 [N, C, H, W], got shape ",
           ShapeStr(xs));
    const int64_t N = xs[0], C = xs[1], H = xs[2], W = xs[3];
    if (C < 1) Fail(label_, "input X: expected C >= 1, got shape ", ShapeStr(xs));
    if (C % group_ != 0)
      Fail(label_, "attribute 'group' (", group_, ") must divide the channels of input X ",
           ShapeStr(xs));
    const int64_t G = group_, Cg = C / G, Wg = Words(Cg), XW = G * Wg;
    uint64_t* out = y.Allocate({N, H, W, XW});
    const float* in = x.Data();
    ParallelFor(ctx, static_cast<size_t>(N * H), [&](size_t i) {
      const int64_t n = static_cast<int64_t>(i) / H, h = static_cast<int64_t>(i) % H;
      uint64_t* o = out + (n * H + h) * W * XW;
      std::memset(o, 0, static_cast<size_t>(W * XW) * sizeof(uint64_t));
      for (int64_t c = 0; c < C; ++c) {
        const int64_t g = c / Cg, cg = c % Cg;
        const int64_t word = g * Wg + cg / kWordBits;
        const int shift = static_cast<int>(cg % kWordBits);
        const float* xr = in + ((n * C + c) * H + h) * W;
        uint64_t* ow = o + word;
        // Branch-free (see the rank-2 case); contiguous and vectorisable when XW == 1.
        for (int64_t w = 0; w < W; ++w)
          ow[w * XW] |= static_cast<uint64_t>(!(xr[w] >= 0.0f)) << shift;
      }
    });
  });
}

// ---------------------------------------------------------------------------- XnorConv

xnor::ConvGeometry MakeConvGeometry(const std::string& label, const ConvAttrs& a,
                                    const std::vector<int64_t>& xs,
                                    const std::vector<int64_t>& ws, int64_t P, int64_t Q) {
  const char* x_layout = P == 1 ? "[N, H, W, G*Wg]" : "[N, H, W, G*P*Wg]";
  const char* w_layout = Q == 1 ? "[M, KH, KW, Wg]" : "[M, KH, KW, Q*Wg]";
  CheckRank(label, "X", xs, 4, x_layout);
  CheckRank(label, "W", ws, 4, w_layout);
  xnor::ConvGeometry s{};
  s.N = xs[0];
  s.H = xs[1];
  s.W = xs[2];
  s.G = a.group;
  s.Cg = a.in_channels / a.group;
  s.Wg = Words(s.Cg);
  s.XW = s.G * P * s.Wg;
  if (xs[3] != s.XW) {
    if (P == 1)
      Fail(label, "input X: expected last dim G*ceil((C/G)/64) = ", s.G, "*", s.Wg, " = ", s.XW,
           " (in_channels ", a.in_channels, ", group ", a.group, "), got shape ", ShapeStr(xs));
    Fail(label, "input X: expected last dim G*P*ceil((C/G)/64) = ", s.G, "*", P, "*", s.Wg,
         " = ", s.XW, " (in_channels ", a.in_channels, ", group ", a.group, ", ", P,
         " planes), got shape ", ShapeStr(xs));
  }
  s.M = ws[0];
  s.KH = a.kernel_shape[0];
  s.KW = a.kernel_shape[1];
  if (s.M < 1 || s.M % s.G != 0)
    Fail(label, "input W: expected M (dim 0) >= 1 and divisible by group ", s.G, ", got shape ",
         ShapeStr(ws));
  if (ws[1] != s.KH || ws[2] != s.KW || ws[3] != Q * s.Wg) {
    if (Q == 1)
      Fail(label, "input W: expected shape [", s.M, ", ", s.KH, ", ", s.KW, ", ", s.Wg,
           "] ([M, KH, KW, ceil(Cg/64)] with Cg = ", s.Cg, "), got ", ShapeStr(ws));
    Fail(label, "input W: expected shape [", s.M, ", ", s.KH, ", ", s.KW, ", ", Q * s.Wg,
         "] ([M, KH, KW, Q*ceil(Cg/64)] with Cg = ", s.Cg, ", Q = ", Q, "), got ",
         ShapeStr(ws));
  }
  s.Mg = s.M / s.G;
  s.sh = a.strides[0];
  s.sw = a.strides[1];
  s.pt = a.pads[0];
  s.pl = a.pads[1];
  s.dh = a.dilations[0];
  s.dw = a.dilations[1];
  a.OutputSize(label, xs, s.H, s.W, &s.OH, &s.OW);
  s.blocks_per_group = (s.Mg + xnor::kBlockM - 1) / xnor::kBlockM;
  return s;
}

namespace {

void ParseXnorConvAttrs(const Attrs& at, const std::string& label, ConvAttrs* a) {
  a->Parse(at, label, /*with_channels=*/true);
  const int64_t taps = a->kernel_shape[0] * a->kernel_shape[1];
  if ((a->in_channels / a->group) * taps > (int64_t{1} << 31) - 1)
    Fail(label, "receptive field (in_channels/group * KH * KW = ",
         (a->in_channels / a->group) * taps, ") does not fit the int32 dot product");
}

}  // namespace

XnorConvOp::XnorConvOp(const OrtApi* api, const OrtKernelInfo* info) noexcept {
  Construct(api, info, "qcompile::XnorConv", &label_, &init_error_, [&](const Attrs& at) {
    CheckNodeArity(api, info, label_, 4, 1);
    ParseXnorConvAttrs(at, label_, &attrs_);
    variant_ = PickVariant(label_, &init_error_);
    if (variant_) const_w_.Prepare(info, variant_->weights, attrs_.group);
    tap_concat_ = TapConcatMode();
    concat_w_.Prepare(info, variant_, attrs_, tap_concat_);
    lut_.use = LutUseFor(variant_);
  });
}

Ort::Status XnorConvOp::Compute(OrtKernelContext* ctx, const U64Tensor& x, const U64Tensor& w,
                                const F32Tensor& scale, const F32Tensor& bias, F32Tensor& y) {
  return GuardCompute(label_, [&] {
    if (!init_error_.empty()) throw OpError(init_error_);
    const std::vector<int64_t>& ws = w.Shape();
    const xnor::ConvGeometry s = MakeConvGeometry(label_, attrs_, x.Shape(), ws, 1, 1);
    CheckVector(label_, "scale", scale.Shape(), s.M, "W is " + ShapeStr(ws));
    CheckVector(label_, "bias", bias.Shape(), s.M, "W is " + ShapeStr(ws));
    float* out = y.Allocate({s.N, s.M, s.OH, s.OW});
    if (s.N == 0 || s.H == 0 || s.W == 0) {
      // Empty batch: nothing to compute. Empty image: every tap is padding, D = 0.
      for (int64_t i = 0; i < s.N * s.M * s.OH * s.OW; ++i) {
        const int64_t m = (i / (s.OH * s.OW)) % s.M;
        out[i] = 0.0f * scale.Data()[m] + bias.Data()[m];
      }
      return;
    }
    xnor::ConvArgs args{s, x.Data(), w.Data(), nullptr, nullptr, scale.Data(), bias.Data(), out};
    RunConv(ctx, *variant_, args, const_w_.Get(w.Data(), ws), tap_concat_,
            concat_w_.Get(w.Data(), ws), &lut_);
  });
}

// ---------------------------------------------------------------------------- XnorConvThreshold

XnorConvThresholdOp::XnorConvThresholdOp(const OrtApi* api, const OrtKernelInfo* info) noexcept {
  Construct(api, info, "qcompile::XnorConvThreshold", &label_, &init_error_,
            [&](const Attrs& at) {
              CheckNodeArity(api, info, label_, 4, 1);
              ParseXnorConvAttrs(at, label_, &attrs_);
              out_group_ = at.Int("out_group", 1);
              if (out_group_ < 1 || out_group_ > kMaxAttr)
                Fail(label_, "attribute 'out_group': expected >= 1, got ", out_group_);
              variant_ = PickVariant(label_, &init_error_);
              if (variant_) const_w_.Prepare(info, variant_->weights, attrs_.group);
              tap_concat_ = TapConcatMode();
              concat_w_.Prepare(info, variant_, attrs_, tap_concat_);
              lut_.use = LutUseFor(variant_);
            });
}

Ort::Status XnorConvThresholdOp::Compute(OrtKernelContext* ctx, const U64Tensor& x,
                                         const U64Tensor& w, const I32Tensor& threshold,
                                         const I32Tensor& direction, U64Tensor& y) {
  return GuardCompute(label_, [&] {
    if (!init_error_.empty()) throw OpError(init_error_);
    const std::vector<int64_t>& ws = w.Shape();
    const xnor::ConvGeometry s = MakeConvGeometry(label_, attrs_, x.Shape(), ws, 1, 1);
    CheckVector(label_, "threshold", threshold.Shape(), s.M, "W is " + ShapeStr(ws));
    CheckVector(label_, "direction", direction.Shape(), s.M, "W is " + ShapeStr(ws));
    if (s.M % out_group_ != 0)
      Fail(label_, "attribute 'out_group' (", out_group_, ") must divide M of input W ",
           ShapeStr(ws));
    const int32_t* dir = direction.Data();
    for (int64_t m = 0; m < s.M; ++m)
      if (dir[m] != 1 && dir[m] != -1)
        Fail(label_, "input direction: expected +1 or -1 per channel, got ", dir[m],
             " at index ", m, " (shape ", ShapeStr(direction.Shape()), ")");
    const int64_t OG = out_group_, Mg_out = s.M / OG, Wg_out = Words(Mg_out);
    const int64_t YW = OG * Wg_out;
    uint64_t* out = y.Allocate({s.N, s.OH, s.OW, YW});
    if (s.N == 0) return;
    // D for every output, then the threshold bits packed per output pixel.
    std::unique_ptr<int32_t[]> d(new int32_t[static_cast<size_t>(s.N * s.M * s.OH * s.OW)]);
    if (s.H > 0 && s.W > 0) {
      xnor::ConvArgs args{s, x.Data(), w.Data(), nullptr, nullptr, nullptr, nullptr, nullptr};
      args.d = d.get();
      RunConv(ctx, *variant_, args, const_w_.Get(w.Data(), ws), tap_concat_,
              concat_w_.Get(w.Data(), ws), &lut_);
    } else {
      std::fill(d.get(), d.get() + s.N * s.M * s.OH * s.OW, 0);  // every tap is padding
    }
    const int32_t* thr = threshold.Data();
    const int64_t plane = s.OH * s.OW;
    const int64_t M = s.M, OH = s.OH, OW = s.OW;
    const int32_t* dd = d.get();
    ParallelFor(ctx, static_cast<size_t>(s.N * OH), [&](size_t i) {
      const int64_t n = static_cast<int64_t>(i) / OH, oh = static_cast<int64_t>(i) % OH;
      uint64_t* row = out + (n * OH + oh) * OW * YW;
      const int32_t* d_row = dd + n * M * plane + oh * OW;
      // Output word k of a pixel holds channels m0 .. m0+nb-1 (one out_group's, 64 at most).
      // Bit 1 (-1) iff not (up ? D >= t : D <= t), i.e. (D ^ f) < (t ^ f) with f = 0 for up and
      // ~0 for down (~ reverses the order of int32 without overflow): branch-free, since the
      // bits of real data are unpredictable. Eight pixels' words are built in registers.
      for (int64_t og = 0; og < OG; ++og)
        for (int64_t k = 0; k < Wg_out; ++k) {
          const int64_t m0 = og * Mg_out + k * kWordBits;
          const int64_t nb = std::min<int64_t>(kWordBits, Mg_out - k * kWordBits);
          const int64_t word = og * Wg_out + k;
          int64_t ow = 0;
#if defined(__SSE2__)
          for (; ow + 8 <= OW; ow += 8) {
            // Four 2-pixel registers of 64-bit words; per channel, 8 compares as 2 x 4 int32
            // lanes widened to 64-bit masks (unpack), ANDed with the channel's bit.
            __m128i acc[4] = {_mm_setzero_si128(), _mm_setzero_si128(), _mm_setzero_si128(),
                              _mm_setzero_si128()};
            for (int64_t j = 0; j < nb; ++j) {
              const int64_t m = m0 + j;
              const int32_t f = dir[m] > 0 ? 0 : ~int32_t{0};
              const __m128i fv = _mm_set1_epi32(f), tv = _mm_set1_epi32(thr[m] ^ f);
              const __m128i bit = _mm_set1_epi64x(static_cast<long long>(uint64_t{1} << j));
              const __m128i* dm = reinterpret_cast<const __m128i*>(d_row + m * plane + ow);
              for (int h = 0; h < 2; ++h) {
                const __m128i v = _mm_xor_si128(_mm_loadu_si128(dm + h), fv);
                const __m128i lt = _mm_cmplt_epi32(v, tv);  // (D ^ f) < (t ^ f)
                acc[2 * h] = _mm_or_si128(acc[2 * h], _mm_and_si128(_mm_unpacklo_epi32(lt, lt), bit));
                acc[2 * h + 1] =
                    _mm_or_si128(acc[2 * h + 1], _mm_and_si128(_mm_unpackhi_epi32(lt, lt), bit));
              }
            }
            alignas(16) uint64_t bits[8];
            for (int q = 0; q < 4; ++q) _mm_store_si128(reinterpret_cast<__m128i*>(bits) + q, acc[q]);
            for (int p = 0; p < 8; ++p) row[(ow + p) * YW + word] = bits[p];
          }
#endif
          for (; ow + 8 <= OW; ow += 8) {
            uint64_t bits[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (int64_t j = 0; j < nb; ++j) {
              const int64_t m = m0 + j;
              const int32_t f = dir[m] > 0 ? 0 : ~int32_t{0};
              const int32_t tf = thr[m] ^ f;
              const int32_t* dm = d_row + m * plane + ow;
              for (int p = 0; p < 8; ++p) bits[p] |= static_cast<uint64_t>((dm[p] ^ f) < tf) << j;
            }
            for (int p = 0; p < 8; ++p) row[(ow + p) * YW + word] = bits[p];
          }
          for (; ow < OW; ++ow) {
            uint64_t bits = 0;
            for (int64_t j = 0; j < nb; ++j) {
              const int64_t m = m0 + j;
              const int32_t f = dir[m] > 0 ? 0 : ~int32_t{0};
              bits |= static_cast<uint64_t>((d_row[m * plane + ow] ^ f) < (thr[m] ^ f)) << j;
            }
            row[ow * YW + word] = bits;
          }
        }
    });
  });
}

// ---------------------------------------------------------------------------- PackedMaxPool

PackedMaxPoolOp::PackedMaxPoolOp(const OrtApi* api, const OrtKernelInfo* info) noexcept {
  Construct(api, info, "qcompile::PackedMaxPool", &label_, &init_error_, [&](const Attrs& at) {
    CheckNodeArity(api, info, label_, 2, 1);
    attrs_.Parse(at, label_, /*with_channels=*/false);
    if (at.Int("ceil_mode", 0) != 0)
      Fail(label_, "attribute 'ceil_mode': only 0 (floor) is supported");
  });
}

Ort::Status PackedMaxPoolOp::Compute(OrtKernelContext* ctx, const U64Tensor& x,
                                     const U64Tensor& or_mask, U64Tensor& y) {
  return GuardCompute(label_, [&] {
    if (!init_error_.empty()) throw OpError(init_error_);
    const std::vector<int64_t>& xs = x.Shape();
    CheckRank(label_, "X", xs, 4, "[N, H, W, Wtot]");
    const int64_t N = xs[0], H = xs[1], W = xs[2], Wt = xs[3];
    if (or_mask.Shape().size() != 1 || or_mask.Shape()[0] != Wt)
      Fail(label_, "input or_mask: expected shape [", Wt, "] (the last dim of input X ",
           ShapeStr(xs), "), got ", ShapeStr(or_mask.Shape()));
    int64_t OH = 0, OW = 0;
    attrs_.OutputSize(label_, xs, H, W, &OH, &OW);
    uint64_t* out = y.Allocate({N, OH, OW, Wt});
    if (N == 0 || Wt == 0) return;
    const uint64_t* in = x.Data();
    const uint64_t* mask = or_mask.Data();
    const int64_t KH = attrs_.kernel_shape[0], KW = attrs_.kernel_shape[1];
    const int64_t sh = attrs_.strides[0], sw = attrs_.strides[1];
    const int64_t dh = attrs_.dilations[0], dw = attrs_.dilations[1];
    const int64_t pt = attrs_.pads[0], pl = attrs_.pads[1];
    ParallelFor(ctx, static_cast<size_t>(N * OH), [&](size_t i) {
      const int64_t n = static_cast<int64_t>(i) / OH, oh = static_cast<int64_t>(i) % OH;
      std::vector<uint64_t> all_and(static_cast<size_t>(Wt)), any_or(static_cast<size_t>(Wt));
      for (int64_t ow = 0; ow < OW; ++ow) {
        // Over in-bounds taps only (max-pool pads with -inf, which never wins); a window with
        // no in-bounds tap gives AND = all ones, OR = 0, as the reference.
        std::fill(all_and.begin(), all_and.end(), ~uint64_t{0});
        std::fill(any_or.begin(), any_or.end(), uint64_t{0});
        for (int64_t kh = 0; kh < KH; ++kh) {
          const int64_t ih = oh * sh - pt + kh * dh;
          if (ih < 0 || ih >= H) continue;
          for (int64_t kw = 0; kw < KW; ++kw) {
            const int64_t iw = ow * sw - pl + kw * dw;
            if (iw < 0 || iw >= W) continue;
            const uint64_t* px = in + ((n * H + ih) * W + iw) * Wt;
            for (int64_t k = 0; k < Wt; ++k) {
              all_and[k] &= px[k];
              any_or[k] |= px[k];
            }
          }
        }
        uint64_t* o = out + ((n * OH + oh) * OW + ow) * Wt;
        for (int64_t k = 0; k < Wt; ++k) o[k] = (all_and[k] & ~mask[k]) | (any_or[k] & mask[k]);
      }
    });
  });
}

// ---------------------------------------------------------------------------- XnorGemm

XnorGemmOp::XnorGemmOp(const OrtApi* api, const OrtKernelInfo* info) noexcept {
  Construct(api, info, "qcompile::XnorGemm", &label_, &init_error_, [&](const Attrs& at) {
    CheckNodeArity(api, info, label_, 4, 1);
    in_features_ = at.Int("in_features", -1);
    if (in_features_ < 1 || in_features_ > (int64_t{1} << 31) - 1)
      Fail(label_, "attribute 'in_features': expected 1..2^31-1, got ", in_features_,
           in_features_ == -1 ? " (missing; it is required)" : "");
    variant_ = PickVariant(label_, &init_error_);
    if (variant_) const_w_.Prepare(info, variant_->weights, 1);
  });
}

Ort::Status XnorGemmOp::Compute(OrtKernelContext* ctx, const U64Tensor& x, const U64Tensor& w,
                                const F32Tensor& scale, const F32Tensor& bias, F32Tensor& y) {
  return GuardCompute(label_, [&] {
    if (!init_error_.empty()) throw OpError(init_error_);
    const std::vector<int64_t>& xs = x.Shape();
    const std::vector<int64_t>& ws = w.Shape();
    CheckRank(label_, "X", xs, 2, "[N, Kw]");
    CheckRank(label_, "W", ws, 2, "[M, Kw]");
    const int64_t Kw = Words(in_features_);
    if (xs[1] != Kw)
      Fail(label_, "input X: expected last dim ceil(in_features/64) = ", Kw, " (in_features ",
           in_features_, "), got shape ", ShapeStr(xs));
    if (ws[0] < 1 || ws[1] != Kw)
      Fail(label_, "input W: expected shape [M, ", Kw, "] with M >= 1 (in_features ",
           in_features_, "), got ", ShapeStr(ws));
    CheckVector(label_, "scale", scale.Shape(), ws[0], "W is " + ShapeStr(ws));
    CheckVector(label_, "bias", bias.Shape(), ws[0], "W is " + ShapeStr(ws));
    // A dense layer is a 1x1 convolution of a 1x1 image with K channels: same packed layouts.
    xnor::ConvGeometry s{};
    s.N = xs[0];
    s.H = s.W = 1;
    s.G = 1;
    s.Cg = in_features_;
    s.Wg = Kw;
    s.XW = Kw;
    s.M = s.Mg = ws[0];
    s.KH = s.KW = 1;
    s.sh = s.sw = s.dh = s.dw = 1;
    s.pt = s.pl = 0;
    s.OH = s.OW = 1;
    s.blocks_per_group = (s.Mg + xnor::kBlockM - 1) / xnor::kBlockM;
    float* out = y.Allocate({s.N, s.M});
    if (s.N == 0) return;
    xnor::ConvArgs args{s, x.Data(), w.Data(), nullptr, nullptr, scale.Data(), bias.Data(), out};
    RunConv(ctx, *variant_, args, const_w_.Get(w.Data(), ws));
  });
}

}  // namespace qcompile

// Debug counter for tests: runs of XnorConv / XnorConvThreshold that took the tap-concatenated
// path since the library was loaded (tests/test_ops_xnor_small.py reads it through ctypes).
extern "C" __attribute__((visibility("default"))) uint64_t qcompile_xnor_tap_concat_runs(void) {
  return qcompile::g_tap_concat_runs.load(std::memory_order_relaxed);
}

