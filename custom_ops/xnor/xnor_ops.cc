#include "xnor_ops.h"

#include "binarize_pack.h"

#include <algorithm>
#include <cstring>
#include <memory>

#include "../packed_conv/check_geometry.h"
#include "../packed_conv/run_binary.h"
#include "../packed_conv/tap_concat.h"
#include "binarize_pack.h"
#include "packed_maxpool.h"

namespace qcompile {
namespace {

void ParseXnorConvAttrs(const Attrs& at, const std::string& label, ConvAttrs* a) {
  a->Parse(at, label, /*with_channels=*/true);
  const int64_t taps = a->kernel_shape[0] * a->kernel_shape[1];
  if ((a->in_channels / a->group) * taps > (int64_t{1} << 31) - 1)
    Fail(label, "receptive field (in_channels/group * KH * KW = ",
         (a->in_channels / a->group) * taps, ") does not fit the int32 dot product");
}

}  // namespace

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
    // An empty output has no buffer (null): nothing to write, and no pointer may be formed on it.
    if (N == 0 || H == 0 || W == 0) return;
    const xnor::BinarizeRowArgs args{x.Data(), C, H, W, G};
    const int64_t plane = H * W, spans = (plane + xnor::kPackSpan - 1) / xnor::kPackSpan;
    ParallelFor(ctx, static_cast<size_t>(N * spans), [&](size_t i) {
      const int64_t n = static_cast<int64_t>(i) / spans;
      const int64_t p0 = static_cast<int64_t>(i) % spans * xnor::kPackSpan;
      const int64_t p1 = p0 + xnor::kPackSpan < plane ? p0 + xnor::kPackSpan : plane;
      xnor::BinarizePackSpan(args, n, p0, p1, out + (n * plane + p0) * XW);
    });
  });
}

// ---------------------------------------------------------------------------- XnorConv

void XnorConvState::Init(const OrtKernelInfo* info, const Attrs& at, const std::string& label) {
  ParseXnorConvAttrs(at, label, &attrs_);
  variant_ = &SelectVariant(xnor::Variants(), label, KernelAttr(at));
  packed::PrepareBinaryWeights(info, variant_->kernel, attrs_.group, &const_w_);
  tap_concat_ = tapconcat::TapConcatMode();
  packed::PrepareBinaryConcatWeights(info, variant_->kernel, attrs_, tap_concat_, &concat_w_);
  lut_.use = lut::EffectiveUse(variant_->kernel.lut_use);
}

XnorConvOp::XnorConvOp(const OrtApi* api, const OrtKernelInfo* info) noexcept {
  Construct(api, info, "qcompile::XnorConv", &label_, &init_error_, [&](const Attrs& at) {
    CheckNodeArity(api, info, label_, 4, 1);
    Init(info, at, label_);
  });
}

Ort::Status XnorConvOp::Compute(OrtKernelContext* ctx, const U64Tensor& x, const U64Tensor& w,
                                const F32Tensor& scale, const F32Tensor& bias, F32Tensor& y) {
  return GuardCompute(label_, [&] {
    if (!init_error_.empty()) throw OpError(init_error_);
    const std::vector<int64_t>& ws = w.Shape();
    const packed::ConvGeometry s = packed::MakeConvGeometry(label_, attrs_, x.Shape(), ws, 1, 1);
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
    packed::ConvArgs args{s, x.Data(), w.Data(), nullptr, nullptr, scale.Data(), bias.Data(), out};
    packed::RunBinaryConv(ctx, variant_->kernel, args, const_w_.Get(w.Data(), ws), tap_concat_,
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
              Init(info, at, label_);
            });
}

Ort::Status XnorConvThresholdOp::Compute(OrtKernelContext* ctx, const U64Tensor& x,
                                         const U64Tensor& w, const I32Tensor& threshold,
                                         const I32Tensor& direction, U64Tensor& y) {
  return GuardCompute(label_, [&] {
    if (!init_error_.empty()) throw OpError(init_error_);
    const std::vector<int64_t>& ws = w.Shape();
    const packed::ConvGeometry s = packed::MakeConvGeometry(label_, attrs_, x.Shape(), ws, 1, 1);
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
      packed::ConvArgs args{s, x.Data(), w.Data(), nullptr, nullptr, nullptr, nullptr, nullptr};
      args.d = d.get();
      packed::RunBinaryConv(ctx, variant_->kernel, args, const_w_.Get(w.Data(), ws), tap_concat_,
                            concat_w_.Get(w.Data(), ws), &lut_);
    } else {
      std::fill(d.get(), d.get() + s.N * s.M * s.OH * s.OW, 0);  // every tap is padding
    }
    const xnor::ThresholdArgs ta{threshold.Data(), dir, s.OH * s.OW, OG, Mg_out, Wg_out, s.OW, YW};
    const xnor::ThresholdRowFn pack = variant_->threshold;
    const int64_t M = s.M, OH = s.OH, OW = s.OW;
    const int32_t* dd = d.get();
    ParallelFor(ctx, static_cast<size_t>(s.N * OH), [&](size_t i) {
      const int64_t n = static_cast<int64_t>(i) / OH, oh = static_cast<int64_t>(i) % OH;
      pack(ta, dd + n * M * ta.plane + oh * OW, out + (n * OH + oh) * OW * YW);
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
    const xnor::PoolArgs pa{x.Data(), or_mask.Data(), out, H, W, Wt, OH, OW,
                            attrs_.kernel_shape[0], attrs_.kernel_shape[1], attrs_.strides[0],
                            attrs_.strides[1], attrs_.dilations[0], attrs_.dilations[1],
                            attrs_.pads[0], attrs_.pads[1]};
    ParallelFor(ctx, static_cast<size_t>(N * OH), [&](size_t i) {
      xnor::PackedMaxPoolRow(pa, static_cast<int64_t>(i) / OH, static_cast<int64_t>(i) % OH);
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
    variant_ = &SelectVariant(xnor::Variants(), label_, KernelAttr(at));
    packed::PrepareBinaryWeights(info, variant_->kernel, 1, &const_w_);
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
    const packed::ConvGeometry s = packed::DenseGeometry(xs[0], in_features_, Kw, Kw, ws[0]);
    float* out = y.Allocate({s.N, s.M});
    if (s.N == 0) return;
    packed::ConvArgs args{s, x.Data(), w.Data(), nullptr, nullptr, scale.Data(), bias.Data(), out};
    packed::RunBinaryConv(ctx, variant_->kernel, args, const_w_.Get(w.Data(), ws));
  });
}

}  // namespace qcompile
