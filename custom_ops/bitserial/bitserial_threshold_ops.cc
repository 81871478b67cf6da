#include "bitserial_threshold_ops.h"

#include <memory>

#include "../packed_conv/check_geometry.h"
#include "../packed_conv/run_planes.h"
#include "../xnor/packed_maxpool.h"
#include "dense_planes.h"
#include "multi_threshold.h"

namespace qcompile {
namespace {

// The kernels write float(D) * 1 + 0; that is D exactly while |D| <= 2^24 (checked when the
// kernel is created), so every BitSerialConv variant, table lookup included, gives the exact D.
constexpr double kExactFloatD = 16777216.0;

// D of every output of a run, as exact floats, from the op's kernel variant.
struct ExactD {
  std::vector<float> d, ones, zeros;
  void Prepare(packed::BitSerialArgs* a, int64_t outputs) {
    d.assign(static_cast<size_t>(outputs), 0.0f);
    ones.assign(static_cast<size_t>(a->geo.M), 1.0f);
    zeros.assign(static_cast<size_t>(a->geo.M), 0.0f);
    a->scale = ones.data();
    a->bias = zeros.data();
    a->y = d.data();
  }
};

// Writes the codes of D [N, M, OH, OW] into y [N, OH, OW, YW].
void WriteCodes(OrtKernelContext* ctx, const bitserial::MultiThresholdArgs& ta, const float* d,
                int64_t N, int64_t M, int64_t OH, uint64_t* y) {
  const int64_t OW = ta.OW, YW = ta.YW;
  ParallelFor(ctx, static_cast<size_t>(N * OH), [&](size_t i) {
    const int64_t n = static_cast<int64_t>(i) / OH, oh = static_cast<int64_t>(i) % OH;
    bitserial::MultiThresholdRow(ta, d + n * M * ta.plane + oh * OW, y + (n * OH + oh) * OW * YW);
  });
}

}  // namespace

// ---------------------------------------------------------------------------- output codes

void OutCodeAttrs::Parse(const Attrs& at, const std::string& label) {
  out_base = at.Int("out_base", 0);
  out_planes = at.Int("out_planes", -1);
  out_group = at.Int("out_group", 1);
  if (out_base < -(int64_t{1} << 15) || out_base > (int64_t{1} << 15))
    Fail(label, "attribute 'out_base': expected |out_base| <= 2^15, got ", out_base);
  if (out_planes < 1 || out_planes > packed::kMaxPlanes)
    Fail(label, "attribute 'out_planes': expected 1..", packed::kMaxPlanes, ", got ", out_planes,
         out_planes == -1 ? " (missing; it is required)" : "");
  if (out_group < 1 || out_group > kMaxAttr)
    Fail(label, "attribute 'out_group': expected >= 1, got ", out_group);
}

int64_t OutCodeAttrs::Check(const std::string& label, const int32_t* t,
                            const std::vector<int64_t>& ts, const int32_t* dir,
                            const std::vector<int64_t>& ds, int64_t M) const {
  if (ts.size() != 2 || ts[0] != M || ts[1] < 1 || ts[1] > 255)
    Fail(label, "input thresholds: expected shape [M, L] with M = ", M,
         " (the output channels of W) and 1 <= L <= 255, got ", ShapeStr(ts));
  CheckVector(label, "direction", ds, M, "M of W");
  if (M % out_group != 0)
    Fail(label, "attribute 'out_group' (", out_group, ") must divide the ", M,
         " output channels");
  const int64_t L = ts[1];
  const bool twos = out_base < 0;
  const int64_t lo = twos ? -(int64_t{1} << (out_planes - 1)) : 0;
  const int64_t hi = twos ? (int64_t{1} << (out_planes - 1)) - 1 : (int64_t{1} << out_planes) - 1;
  if (out_base < lo || out_base + L > hi)
    Fail(label, "codes out_base + [0, L] = [", out_base, ", ", out_base + L, "] do not fit ",
         out_planes, twos ? " two's complement" : " unsigned", " planes [", lo, ", ", hi, "]");
  for (int64_t m = 0; m < M; ++m) {
    if (dir[m] != 1 && dir[m] != -1)
      Fail(label, "input direction: expected +1 or -1 per channel, got ", dir[m], " at index ", m,
           " (shape ", ShapeStr(ds), ")");
    for (int64_t k = 1; k < L; ++k) {
      const int32_t a = t[m * L + k - 1], b = t[m * L + k];
      if (dir[m] > 0 ? b < a : b > a)
        Fail(label, "input thresholds: channel ", m, " must be ",
             dir[m] > 0 ? "non-decreasing (direction +1)" : "non-increasing (direction -1)",
             ", got ", a, " then ", b, " at index ", k, " (shape ", ShapeStr(ts), ")");
    }
  }
  return L;
}

void OutCodes::Prepare(const OrtKernelInfo* info, const std::string& label,
                       const OutCodeAttrs& attrs) {
  std::vector<int64_t> ts, ds;
  if (!ConstantInput(info, 2, &t_src_, &ts) || !ConstantInput(info, 3, &d_src_, &ds)) return;
  int64_t L = 0;
  try {  // a bad constant is reported by Compute, with the W it was checked against
    if (ts.size() != 2) return;
    L = attrs.Check(label, t_src_, ts, d_src_, ds, ts[0]);
  } catch (const std::exception&) {
    t_src_ = d_src_ = nullptr;
    return;
  }
  M_ = ts[0];
  t_shape_ = ts;
  d_shape_ = ds;
  tables_.Build(t_src_, d_src_, M_, L);
}

bitserial::MultiThresholdArgs OutCodes::Args(const std::string& label, const OutCodeAttrs& attrs,
                                             const I32Tensor& thresholds,
                                             const I32Tensor& direction, int64_t M,
                                             OutCodes* scratch) const {
  const OutCodes* use = this;
  if (!(t_src_ && thresholds.Data() == t_src_ && direction.Data() == d_src_ && M == M_ &&
        thresholds.Shape() == t_shape_ && direction.Shape() == d_shape_)) {
    const int64_t L = attrs.Check(label, thresholds.Data(), thresholds.Shape(), direction.Data(),
                                  direction.Shape(), M);
    scratch->tables_.Build(thresholds.Data(), direction.Data(), M, L);
    use = scratch;
  }
  bitserial::MultiThresholdArgs ta{};
  use->tables_.Fill(&ta);
  ta.out_base = attrs.out_base;
  ta.P = attrs.out_planes;
  return ta;
}

// ---------------------------------------------------------------------------- BitSerialConvThreshold

BitSerialConvThresholdOp::BitSerialConvThresholdOp(const OrtApi* api,
                                                   const OrtKernelInfo* info) noexcept {
  Construct(api, info, "qcompile::BitSerialConvThreshold", &label_, &init_error_,
            [&](const Attrs& at) {
              CheckNodeArity(api, info, label_, 4, 1);
              attrs_.Parse(at, label_, /*with_channels=*/true);
              planes_.Parse(at, label_);
              planes_.CheckRange(label_,
                                 (attrs_.in_channels / attrs_.group) * attrs_.kernel_shape[0] *
                                     attrs_.kernel_shape[1],
                                 kExactFloatD);
              out_.Parse(at, label_);
              variant_ = &SelectVariant(bitserial::Variants(), label_, KernelAttr(at));
              const int64_t Q = static_cast<int64_t>(planes_.weight_coeffs.size());
              packed::PreparePlaneWeights(info, variant_->kernel, attrs_.group, Q, &const_w_);
              packed::PreparePlaneConcatWeights(info, variant_->kernel, attrs_, Q,
                                                &const_w_concat_);
              lut_.use = lut::EffectiveUse(variant_->kernel.lut_use);
              codes_.Prepare(info, label_, out_);
            });
}

Ort::Status BitSerialConvThresholdOp::Compute(OrtKernelContext* ctx, const U64Tensor& x,
                                              const U64Tensor& w, const I32Tensor& thresholds,
                                              const I32Tensor& direction, U64Tensor& y) {
  return GuardCompute(label_, [&] {
    if (!init_error_.empty()) throw OpError(init_error_);
    const std::vector<int64_t>& ws = w.Shape();
    packed::BitSerialArgs a{};
    planes_.Fill(&a);
    a.geo = packed::MakeConvGeometry(label_, attrs_, x.Shape(), ws, a.P, a.Q);
    const packed::ConvGeometry& s = a.geo;
    OutCodes scratch;
    bitserial::MultiThresholdArgs ta = codes_.Args(label_, out_, thresholds, direction, s.M, &scratch);
    const int64_t OG = out_.out_group, Mg_out = s.M / OG, Wg_out = Words(Mg_out);
    const int64_t YW = OG * out_.out_planes * Wg_out;
    uint64_t* out = y.Allocate({s.N, s.OH, s.OW, YW});
    if (s.N == 0) return;
    ExactD d;
    d.Prepare(&a, s.N * s.M * s.OH * s.OW);
    if (s.H > 0 && s.W > 0) {  // else only padded taps: D = 0
      a.x = x.Data();
      a.w = w.Data();
      packed::RunPlaneConv(ctx, variant_->kernel, a, const_w_.Get(w.Data(), ws),
                           const_w_concat_.Get(w.Data(), ws), &lut_);
    }
    ta.plane = s.OH * s.OW;
    ta.OG = OG;
    ta.Mg_out = Mg_out;
    ta.Wg_out = Wg_out;
    ta.OW = s.OW;
    ta.YW = YW;
    WriteCodes(ctx, ta, d.d.data(), s.N, s.M, s.OH, out);
  });
}

// ---------------------------------------------------------------------------- BitSerialGemmThreshold

BitSerialGemmThresholdOp::BitSerialGemmThresholdOp(const OrtApi* api,
                                                   const OrtKernelInfo* info) noexcept {
  Construct(api, info, "qcompile::BitSerialGemmThreshold", &label_, &init_error_,
            [&](const Attrs& at) {
              CheckNodeArity(api, info, label_, 4, 1);
              in_features_ = at.Int("in_features", -1);
              if (in_features_ < 1 || in_features_ > kMaxAttr)
                Fail(label_, "attribute 'in_features': expected 1..", kMaxAttr, ", got ",
                     in_features_, in_features_ == -1 ? " (missing; it is required)" : "");
              planes_.Parse(at, label_);
              planes_.CheckRange(label_, in_features_, kExactFloatD);
              out_.Parse(at, label_);
              if (out_.out_group != 1)
                Fail(label_, "attribute 'out_group': a dense output has one group, got ",
                     out_.out_group);
              variant_ = &SelectVariant(bitserial::Variants(), label_, KernelAttr(at));
              bitserial::PrepareDenseWeights(
                  info, static_cast<int64_t>(planes_.weight_coeffs.size()), Words(in_features_),
                  &const_w_);
              codes_.Prepare(info, label_, out_);
            });
}

Ort::Status BitSerialGemmThresholdOp::Compute(OrtKernelContext* ctx, const U64Tensor& x,
                                              const U64Tensor& w, const I32Tensor& thresholds,
                                              const I32Tensor& direction, U64Tensor& y) {
  return GuardCompute(label_, [&] {
    if (!init_error_.empty()) throw OpError(init_error_);
    const std::vector<int64_t>& xs = x.Shape();
    const std::vector<int64_t>& ws = w.Shape();
    packed::BitSerialArgs a{};
    planes_.FillDense(label_, in_features_, xs, ws, &a);
    const packed::ConvGeometry& s = a.geo;
    OutCodes scratch;
    bitserial::MultiThresholdArgs ta = codes_.Args(label_, out_, thresholds, direction, s.M, &scratch);
    const int64_t Wg_out = Words(s.M), YW = out_.out_planes * Wg_out;
    uint64_t* out = y.Allocate({s.N, YW});
    if (s.N == 0) return;
    ScratchArray<int32_t, 1024> d(static_cast<size_t>(s.N * s.M));
    bitserial::RunDense(ctx, variant_->dense, bitserial::DenseArgsOf(a, x.Data(), d.data()), s.N,
                        w.Data(), const_w_.Get(w.Data(), ws));
    ta.Wg_out = Wg_out;
    for (int64_t n = 0; n < s.N; ++n)  // one row is microseconds at most: no tasks
      bitserial::MultiThresholdDense(ta, d.data() + n * s.M, s.M, out + n * YW);
  });
}

// ---------------------------------------------------------------------------- PlaneMaxPool

PlaneMaxPoolOp::PlaneMaxPoolOp(const OrtApi* api, const OrtKernelInfo* info) noexcept {
  Construct(api, info, "qcompile::PlaneMaxPool", &label_, &init_error_, [&](const Attrs& at) {
    CheckNodeArity(api, info, label_, 2, 1);
    attrs_.Parse(at, label_, /*with_channels=*/false);
    if (at.Int("ceil_mode", 0) != 0)
      Fail(label_, "attribute 'ceil_mode': only 0 (floor) is supported");
    planes_ = at.Int("planes", -1);
    group_ = at.Int("group", 1);
    signed_ = at.Int("signed", 0);
    if (planes_ < 1 || planes_ > packed::kMaxPlanes)
      Fail(label_, "attribute 'planes': expected 1..", packed::kMaxPlanes, ", got ", planes_,
           planes_ == -1 ? " (missing; it is required)" : "");
    if (group_ < 1 || group_ > kMaxAttr)
      Fail(label_, "attribute 'group': expected >= 1, got ", group_);
    if (signed_ != 0 && signed_ != 1)
      Fail(label_, "attribute 'signed': expected 0 or 1, got ", signed_);
  });
}

Ort::Status PlaneMaxPoolOp::Compute(OrtKernelContext* ctx, const U64Tensor& x,
                                    const U64Tensor& or_mask, U64Tensor& y) {
  return GuardCompute(label_, [&] {
    if (!init_error_.empty()) throw OpError(init_error_);
    const std::vector<int64_t>& xs = x.Shape();
    CheckRank(label_, "X", xs, 4, "[N, H, W, G*P*Wg]");
    const int64_t N = xs[0], H = xs[1], W = xs[2], Wt = xs[3];
    const int64_t G = group_, P = planes_;
    if (Wt < 1 || Wt % (G * P) != 0)
      Fail(label_, "input X: expected last dim group*planes*Wg = ", G, "*", P,
           "*Wg with Wg >= 1, got shape ", ShapeStr(xs));
    const int64_t Wg = Wt / (G * P);
    if (or_mask.Shape().size() != 1 || or_mask.Shape()[0] != G * Wg)
      Fail(label_, "input or_mask: expected shape [", G * Wg, "] (group*Wg, one bit per channel; X ",
           ShapeStr(xs), "), got ", ShapeStr(or_mask.Shape()));
    int64_t OH = 0, OW = 0;
    attrs_.OutputSize(label_, xs, H, W, &OH, &OW);
    uint64_t* out = y.Allocate({N, OH, OW, Wt});
    if (N == 0) return;
    // flip of word (g*P + p)*Wg + k: or_mask's channels (min = max of complements), and the
    // top plane of two's complement codes (so that unsigned order is the codes' order).
    std::vector<uint64_t> flip(static_cast<size_t>(Wt));
    const uint64_t* mask = or_mask.Data();
    for (int64_t g = 0; g < G; ++g)
      for (int64_t p = 0; p < P; ++p)
        for (int64_t k = 0; k < Wg; ++k)
          flip[(g * P + p) * Wg + k] =
              mask[g * Wg + k] ^ (signed_ && p == P - 1 ? ~uint64_t{0} : uint64_t{0});
    const xnor::PlanePoolArgs pa{x.Data(), flip.data(), out, H, W, G, P, Wg, OH, OW,
                                 attrs_.kernel_shape[0], attrs_.kernel_shape[1],
                                 attrs_.strides[0], attrs_.strides[1], attrs_.dilations[0],
                                 attrs_.dilations[1], attrs_.pads[0], attrs_.pads[1]};
    ParallelFor(ctx, static_cast<size_t>(N * OH), [&](size_t i) {
      xnor::PlaneMaxPoolRow(pa, static_cast<int64_t>(i) / OH, static_cast<int64_t>(i) % OH);
    });
  });
}

}  // namespace qcompile
