#include "bitserial_ops.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "../common/quant_attrs.h"
#include "../packed_conv/check_geometry.h"
#include "dense_planes.h"

namespace qcompile {

// ---------------------------------------------------------------------------- QuantizePack

void PackQuantizer::Parse(const Attrs& at, const std::string& label, const std::string& kernel_name) {
  const UniformQuantAttrs u = ParseUniformQuant(at, label, "", "", 65536.0f);
  scale = u.scale;
  zero_point = u.zero_point;
  qmin = u.qmin;
  qmax = u.qmax;
  rounding = static_cast<int>(u.rounding);
  kernel = SelectVariant(bitserial::QuantizePackVariants(), label, kernel_name).kernel;
  planes = at.Int("planes", 0);
  pre_scale = at.Float("pre_scale", 1.0f);
  pre_bias = at.Float("pre_bias", 0.0f);
  if (!std::isfinite(pre_scale) || !std::isfinite(pre_bias))
    Fail(label, "attributes 'pre_scale' / 'pre_bias': expected finite floats, got ", pre_scale,
         " / ", pre_bias);
  has_pre = pre_scale != 1.0f || pre_bias != 0.0f;
  zp_int = static_cast<int64_t>(zero_point);
  // Range of v = q - zero_point; two's complement planes iff it reaches below 0 (SPEC).
  const int64_t lo = static_cast<int64_t>(qmin) - zp_int;
  const int64_t hi = static_cast<int64_t>(qmax) - zp_int;
  twos_complement = lo < 0;
  int64_t needed = 1;
  if (!twos_complement) {
    while ((int64_t{1} << needed) - 1 < hi) ++needed;
  } else {
    while (!(-(int64_t{1} << (needed - 1)) <= lo && hi <= (int64_t{1} << (needed - 1)) - 1))
      ++needed;
  }
  if (planes == 0) planes = needed;
  if (planes < 1 || planes > packed::kMaxPlanes)
    Fail(label, "attribute 'planes': expected 1..", packed::kMaxPlanes, " (0: as needed), got ",
         planes);
  v_min = twos_complement ? -(int64_t{1} << (planes - 1)) : 0;
  v_max = twos_complement ? (int64_t{1} << (planes - 1)) - 1 : (int64_t{1} << planes) - 1;
}

void PackQuantizer::Pack(OrtKernelContext* ctx, const std::string& label, const float* in,
                         const std::vector<int64_t>& xs, int64_t N, int64_t C, int64_t H,
                         int64_t W, int64_t G, uint64_t* out) const {
  const int64_t rows = N * H;
  std::vector<float> pre;  // x * pre_scale + pre_bias, each step rounded as the nodes it replaces
  if (has_pre) {
    const int64_t n = N * C * H * W;
    pre.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      const float t = in[i] * pre_scale;  // no FMA: the build turns contraction off
      pre[static_cast<size_t>(i)] = t + pre_bias;
    }
    in = pre.data();
  }
  const bitserial::QuantParams qp{scale, zero_point, qmin, qmax, static_cast<int32_t>(zp_int),
                                  static_cast<int32_t>(v_min), static_cast<int32_t>(v_max)};
  // Per row (n, h): the first value that cannot be encoded, reported after the loop.
  ScratchArray<float, 64> bad(static_cast<size_t>(rows));
  ScratchArray<char, 64> has_bad(static_cast<size_t>(rows));
  const bitserial::QuantPackRows rows_args{in, out, C, H, W, G, planes, qp, kernel};
  ParallelFor(ctx, static_cast<size_t>(rows), [&](size_t r) {
    has_bad[r] = bitserial::QuantizePackRow(rows_args, rounding, static_cast<int64_t>(r), &bad[r]);
  });
  for (int64_t r = 0; r < rows; ++r)
    if (has_bad[static_cast<size_t>(r)])
      Fail(label, "input X ", ShapeStr(xs), ": value ", bad[static_cast<size_t>(r)],
           has_pre ? " (x * pre_scale + pre_bias)" : "", " quantizes to a code outside [", v_min,
           ", ", v_max, "] that ", planes, " planes hold (or is NaN)");
}

QuantizePackOp::QuantizePackOp(const OrtApi* api, const OrtKernelInfo* info) noexcept {
  Construct(api, info, "qcompile::QuantizePack", &label_, &init_error_, [&](const Attrs& at) {
    CheckNodeArity(api, info, label_, 1, 1);
    quant_.Parse(at, label_, KernelAttr(at));
    group_ = at.Int("group", 1);
    if (group_ < 1) Fail(label_, "attribute 'group': expected >= 1, got ", group_);
  });
}

Ort::Status QuantizePackOp::Compute(OrtKernelContext* ctx, const F32Tensor& x, U64Tensor& y) {
  return GuardCompute(label_, [&] {
    if (!init_error_.empty()) throw OpError(init_error_);
    const std::vector<int64_t>& xs = x.Shape();
    const int64_t P = quant_.planes;
    int64_t N, C, H, W, G;
    if (xs.size() == 2) {
      if (group_ != 1)
        Fail(label_, "attribute 'group': rank-2 input X ", ShapeStr(xs), " requires group 1, got ",
             group_);
      N = xs[0], C = xs[1], H = 1, W = 1, G = 1;
    } else if (xs.size() == 4) {
      N = xs[0], C = xs[1], H = xs[2], W = xs[3], G = group_;
      if (C % G != 0)
        Fail(label_, "attribute 'group' (", G, ") must divide the channels of input X ",
             ShapeStr(xs));
    } else {
      Fail(label_, "input X: expected rank 2 [N, K] or rank 4 [N, C, H, W], got shape ",
           ShapeStr(xs));
    }
    if (C < 1) Fail(label_, "input X: expected at least one channel, got shape ", ShapeStr(xs));
    const int64_t Cg = C / G, Wg = Words(Cg), XW = G * P * Wg;
    uint64_t* out = xs.size() == 2 ? y.Allocate({N, XW}) : y.Allocate({N, H, W, XW});
    if (N == 0 || H == 0 || W == 0) return;
    quant_.Pack(ctx, label_, x.Data(), xs, N, C, H, W, G, out);
  });
}

// ---------------------------------------------------------------------------- plane attributes

void PlaneAttrs::Parse(const Attrs& at, const std::string& label) {
  act_coeffs = at.Ints("act_coeffs", {});
  weight_coeffs = at.Ints("weight_coeffs", {});
  weight_offset = at.Int("weight_offset", 0);
  Validate(label);
}

void PlaneAttrs::Validate(const std::string& label) const {
  auto check = [&](const char* name, const std::vector<int64_t>& v) {
    if (v.empty() || static_cast<int64_t>(v.size()) > packed::kMaxPlanes)
      Fail(label, "attribute '", name, "': expected 1..", packed::kMaxPlanes, " ints, got ",
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

void PlaneAttrs::CheckRange(const std::string& label, int64_t terms, double limit) const {
  int64_t amax = 0, wmax = std::llabs(weight_offset);
  for (int64_t c : act_coeffs) amax += std::llabs(c);
  for (int64_t c : weight_coeffs) wmax += std::llabs(c);
  // |D| <= terms * max|v_act| * max|v_w|, computed in double to stay clear of overflow.
  const double bound =
      static_cast<double>(terms) * static_cast<double>(amax) * static_cast<double>(wmax);
  if (bound > limit)
    Fail(label, "the dot product can reach ", bound, " (", terms, " terms, act_coeffs ",
         ShapeStr(act_coeffs), ", weight_coeffs ", ShapeStr(weight_coeffs), ", weight_offset ",
         weight_offset, "), more than ",
         limit > 1e9 ? std::string("the int32 D holds")
                     : "the " + std::to_string(static_cast<int64_t>(limit)) +
                           " its float32 output holds exactly");
}

void PlaneAttrs::Fill(packed::BitSerialArgs* a) const {
  a->P = static_cast<int64_t>(act_coeffs.size());
  a->Q = static_cast<int64_t>(weight_coeffs.size());
  for (int64_t p = 0; p < a->P; ++p) a->act_coeffs[p] = act_coeffs[p];
  for (int64_t q = 0; q < a->Q; ++q) a->weight_coeffs[q] = weight_coeffs[q];
  a->weight_offset = weight_offset;
}

void PlaneAttrs::FillDense(const std::string& label, int64_t in_features,
                           const std::vector<int64_t>& xs, const std::vector<int64_t>& ws,
                           packed::BitSerialArgs* a) const {
  Fill(a);
  CheckRank(label, "X", xs, 2, "[N, P*Kw]");
  CheckRank(label, "W", ws, 2, "[M, Q*Kw]");
  const int64_t Kw = Words(in_features);
  if (xs[1] != a->P * Kw)
    Fail(label, "input X: expected last dim P*ceil(in_features/64) = ", a->P, "*", Kw, " = ",
         a->P * Kw, " (in_features ", in_features, "), got shape ", ShapeStr(xs));
  if (ws[0] < 1 || ws[1] != a->Q * Kw)
    Fail(label, "input W: expected shape [M, ", a->Q * Kw, "] (Q*ceil(in_features/64), Q = ",
         a->Q, ") with M >= 1, got ", ShapeStr(ws));
  a->geo = packed::DenseGeometry(xs[0], in_features, Kw, a->P * Kw, ws[0]);
}

// ---------------------------------------------------------------------------- BitSerialConv

BitSerialConvOp::BitSerialConvOp(const OrtApi* api, const OrtKernelInfo* info) noexcept {
  Construct(api, info, "qcompile::BitSerialConv", &label_, &init_error_, [&](const Attrs& at) {
    CheckNodeArity(api, info, label_, 4, 1);
    attrs_.Parse(at, label_, /*with_channels=*/true);
    planes_.Parse(at, label_);
    planes_.CheckRange(label_, (attrs_.in_channels / attrs_.group) * attrs_.kernel_shape[0] *
                                   attrs_.kernel_shape[1]);
    variant_ = &SelectVariant(bitserial::Variants(), label_, KernelAttr(at));
    const int64_t Q = static_cast<int64_t>(planes_.weight_coeffs.size());
    packed::PreparePlaneWeights(info, variant_->kernel, attrs_.group, Q, &const_w_);
    packed::PreparePlaneConcatWeights(info, variant_->kernel, attrs_, Q, &const_w_concat_);
    lut_.use = lut::EffectiveUse(variant_->kernel.lut_use);
  });
}

Ort::Status BitSerialConvOp::Compute(OrtKernelContext* ctx, const U64Tensor& x, const U64Tensor& w,
                                     const F32Tensor& scale, const F32Tensor& bias, F32Tensor& y) {
  return GuardCompute(label_, [&] {
    if (!init_error_.empty()) throw OpError(init_error_);
    const std::vector<int64_t>& ws = w.Shape();
    packed::BitSerialArgs a{};
    planes_.Fill(&a);
    a.geo = packed::MakeConvGeometry(label_, attrs_, x.Shape(), ws, a.P, a.Q);
    const packed::ConvGeometry& s = a.geo;
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
    packed::RunPlaneConv(ctx, variant_->kernel, a, const_w_.Get(w.Data(), ws),
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
    variant_ = &SelectVariant(bitserial::Variants(), label_, KernelAttr(at));
    bitserial::PrepareDenseWeights(info, static_cast<int64_t>(planes_.weight_coeffs.size()),
                                   Words(in_features_), &const_w_);
  });
}

Ort::Status BitSerialGemmOp::Compute(OrtKernelContext* ctx, const U64Tensor& x, const U64Tensor& w,
                                     const F32Tensor& scale, const F32Tensor& bias, F32Tensor& y) {
  return GuardCompute(label_, [&] {
    if (!init_error_.empty()) throw OpError(init_error_);
    const std::vector<int64_t>& xs = x.Shape();
    const std::vector<int64_t>& ws = w.Shape();
    packed::BitSerialArgs a{};
    planes_.FillDense(label_, in_features_, xs, ws, &a);
    CheckVector(label_, "scale", scale.Shape(), ws[0], "W is " + ShapeStr(ws));
    CheckVector(label_, "bias", bias.Shape(), ws[0], "W is " + ShapeStr(ws));
    const packed::ConvGeometry& s = a.geo;
    float* out = y.Allocate({s.N, s.M});
    if (s.N == 0) return;
    ScratchArray<int32_t, 1024> d(static_cast<size_t>(s.N * s.M));
    bitserial::RunDense(ctx, variant_->dense, bitserial::DenseArgsOf(a, x.Data(), d.data()), s.N,
                        w.Data(), const_w_.Get(w.Data(), ws));
    bitserial::DenseScaleBias(d.data(), s.N, s.M, scale.Data(), bias.Data(), out);
  });
}

}  // namespace qcompile
