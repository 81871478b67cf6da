#include "qonnx_ops.h"

#include <cmath>

namespace qcompile {

const char kQuantName[] = "qonnx.custom_op.general::Quant";
const char kIntQuantName[] = "qonnx.custom_op.general::IntQuant";

namespace {

// Elements per parallel task of the elementwise loops.
constexpr int64_t kChunk = 1 << 14;

// Strides of a parameter tensor aligned to X's shape (0 along broadcast axes). The parameter
// must broadcast to exactly X's shape (numpy rules, the result keeping X's shape).
std::vector<int64_t> BroadcastStrides(const std::string& op, const char* tensor,
                                      const std::vector<int64_t>& xs,
                                      const std::vector<int64_t>& ps) {
  const size_t r = xs.size();
  auto fail = [&]() {
    Fail(op, "input ", tensor, ": shape ", ShapeStr(ps), " does not broadcast to X's shape ",
         ShapeStr(xs), " (numpy broadcasting, output keeps X's shape)");
  };
  if (ps.size() > r) {
    for (size_t i = 0; i < ps.size() - r; ++i)
      if (ps[i] != 1) fail();
  }
  std::vector<int64_t> strides(r, 0);
  int64_t stride = 1;
  for (size_t k = 0; k < r && k < ps.size(); ++k) {
    const size_t xi = r - 1 - k, pi = ps.size() - 1 - k;
    if (ps[pi] == xs[xi]) {
      strides[xi] = ps[pi] == 1 ? 0 : stride;
    } else if (ps[pi] == 1) {
      strides[xi] = 0;
    } else {
      fail();
    }
    stride *= ps[pi];
  }
  return strides;
}

// Calls fn(i, offsets...) for flat X indices [begin, end), keeping each parameter's offset
// in step with a multi-index counter.
template <size_t P, typename Fn>
void ForRange(const std::vector<int64_t>& xs, const std::vector<int64_t> (&strides)[P],
              int64_t begin, int64_t end, Fn&& fn) {
  const size_t r = xs.size();
  std::vector<int64_t> idx(r, 0);
  int64_t off[P] = {};
  int64_t rem = begin;
  for (size_t d = r; d-- > 0;) {
    idx[d] = rem % xs[d];
    rem /= xs[d];
    for (size_t p = 0; p < P; ++p) off[p] += idx[d] * strides[p][d];
  }
  for (int64_t i = begin; i < end; ++i) {
    fn(i, off);
    for (size_t d = r; d-- > 0;) {
      ++idx[d];
      for (size_t p = 0; p < P; ++p) off[p] += strides[p][d];
      if (idx[d] < xs[d]) break;
      for (size_t p = 0; p < P; ++p) off[p] -= idx[d] * strides[p][d];
      idx[d] = 0;
    }
  }
}


template <size_t P, typename Fn>
void Elementwise(OrtKernelContext* ctx, const std::vector<int64_t>& xs,
                 const std::vector<int64_t> (&strides)[P], Fn&& fn) {
  const int64_t total = NumElements(xs);
  const int64_t tasks = (total + kChunk - 1) / kChunk;
  ParallelFor(ctx, static_cast<size_t>(tasks), [&](size_t t) {
    const int64_t b = static_cast<int64_t>(t) * kChunk;
    const int64_t e = b + kChunk < total ? b + kChunk : total;
    ForRange<P>(xs, strides, b, e, fn);
  });
}

template <Rounding R>
void QuantKernel(OrtKernelContext* ctx, const std::vector<int64_t>& xs,
                 const std::vector<int64_t> (&strides)[2], const float* x, const float* scale,
                 const float* zeropt, float qmin, float qmax, float* y) {
  Elementwise<2>(ctx, xs, strides, [&](int64_t i, const int64_t* off) {
    const float s = scale[off[0]], z = zeropt[off[1]];
    const float q = QuantCode<R>(x[i], s, z, qmin, qmax);
    y[i] = (q - z) * s;
  });
}

}  // namespace

// ---------------------------------------------------------------------------- BipolarQuant

BipolarQuantOp::BipolarQuantOp(const OrtApi* api, const OrtKernelInfo* info) noexcept {
  try {
    label_ = OpLabel(api, info, "qonnx.custom_op.general::BipolarQuant");
    size_t n_in = 0, n_out = 0;
    Ort::ThrowOnError(api->KernelInfo_GetInputCount(info, &n_in));
    Ort::ThrowOnError(api->KernelInfo_GetOutputCount(info, &n_out));
    if (n_in != 2 || n_out != 1)
      Fail(label_, "expected 2 inputs (X, scale) and 1 output, got ", n_in, " and ", n_out);
  } catch (const std::exception& e) {
    init_error_ = e.what();
  }
}

Ort::Status BipolarQuantOp::Compute(OrtKernelContext* ctx, const Ort::Custom::Tensor<float>& x,
                                    const Ort::Custom::Tensor<float>& scale,
                                    Ort::Custom::Tensor<float>& y) {
  return GuardCompute(label_, [&] {
    if (!init_error_.empty()) throw OpError(init_error_);
    const std::vector<int64_t>& xs = x.Shape();
    const std::vector<int64_t> strides[1] = {BroadcastStrides(label_, "scale", xs, scale.Shape())};
    float* out = y.Allocate(xs);
    if (NumElements(xs) == 0) return;
    const float* in = x.Data();
    const float* sc = scale.Data();
    Elementwise<1>(ctx, xs, strides, [&](int64_t i, const int64_t* off) {
      out[i] = (in[i] >= 0.0f ? 1.0f : -1.0f) * sc[off[0]];
    });
  });
}

// ---------------------------------------------------------------------------- Quant / IntQuant

template <const char* kName>
QuantOp<kName>::QuantOp(const OrtApi* api, const OrtKernelInfo* info) noexcept {
  try {
    label_ = OpLabel(api, info, kName);
    size_t n_in = 0, n_out = 0;
    Ort::ThrowOnError(api->KernelInfo_GetInputCount(info, &n_in));
    Ort::ThrowOnError(api->KernelInfo_GetOutputCount(info, &n_out));
    if (n_in != 4 || n_out != 1)
      Fail(label_, "expected 4 inputs (X, scale, zeropt, bitwidth) and 1 output, got ", n_in,
           " and ", n_out);
    Attrs at(api, info, label_);
    signed_ = at.Int("signed", 1);
    narrow_ = at.Int("narrow", 0);
    const std::string mode = at.String("rounding_mode", "ROUND");
    if (signed_ != 0 && signed_ != 1)
      Fail(label_, "attribute 'signed': expected 0 or 1, got ", signed_);
    if (narrow_ != 0 && narrow_ != 1)
      Fail(label_, "attribute 'narrow': expected 0 or 1, got ", narrow_);
    if (!ParseRounding(mode, &rounding_))
      Fail(label_, "attribute 'rounding_mode': expected ROUND, CEIL, FLOOR or ROUND_TO_ZERO, got '",
           mode, "'");
  } catch (const std::exception& e) {
    init_error_ = e.what();
  }
}

template <const char* kName>
Ort::Status QuantOp<kName>::Compute(OrtKernelContext* ctx, const Ort::Custom::Tensor<float>& x,
                                    const Ort::Custom::Tensor<float>& scale,
                                    const Ort::Custom::Tensor<float>& zeropt,
                                    const Ort::Custom::Tensor<float>& bitwidth,
                                    Ort::Custom::Tensor<float>& y) {
  return GuardCompute(label_, [&] {
    if (!init_error_.empty()) throw OpError(init_error_);
    const std::vector<int64_t>& xs = x.Shape();
    const std::vector<int64_t> strides[2] = {
        BroadcastStrides(label_, "scale", xs, scale.Shape()),
        BroadcastStrides(label_, "zeropt", xs, zeropt.Shape())};
    if (NumElements(bitwidth.Shape()) != 1)
      Fail(label_, "input bitwidth: expected a scalar (one element), got shape ",
           ShapeStr(bitwidth.Shape()));
    const float b = bitwidth.Data()[0];
    if (!(b >= 1.0f && b <= 32.0f))
      Fail(label_, "input bitwidth: expected a value in [1, 32], got ", b, " (shape ",
           ShapeStr(bitwidth.Shape()), ")");
    float qmin, qmax;
    QuantRange(static_cast<double>(b), signed_, narrow_, &qmin, &qmax);
    float* out = y.Allocate(xs);
    if (NumElements(xs) == 0) return;
    const float* in = x.Data();
    const float* sc = scale.Data();
    const float* zp = zeropt.Data();
    switch (rounding_) {
      case Rounding::kRound:
        QuantKernel<Rounding::kRound>(ctx, xs, strides, in, sc, zp, qmin, qmax, out);
        break;
      case Rounding::kCeil:
        QuantKernel<Rounding::kCeil>(ctx, xs, strides, in, sc, zp, qmin, qmax, out);
        break;
      case Rounding::kFloor:
        QuantKernel<Rounding::kFloor>(ctx, xs, strides, in, sc, zp, qmin, qmax, out);
        break;
      case Rounding::kRoundToZero:
        QuantKernel<Rounding::kRoundToZero>(ctx, xs, strides, in, sc, zp, qmin, qmax, out);
        break;
    }
  });
}

template struct QuantOp<kQuantName>;
template struct QuantOp<kIntQuantName>;

}  // namespace qcompile
