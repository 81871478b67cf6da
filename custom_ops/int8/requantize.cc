#include "requantize.h"

#include "../common/cpu_features.h"
#include "../common/pool_window.h"
#include "codes.h"
#include "epilogue_checks.h"
#include "../shift/shift_ops.h"

#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace qcompile {
namespace {

// Channels per parallel task are grouped so each task has at least this many values.
constexpr int64_t kMinTaskValues = 1 << 13;

// Pow2 mode: Pow2Quant's code a of y = float(acc) * s + b (the same two roundings), by ShiftConv's
// vectorized quantizer, then a + zp clamped to [lo, hi]; y_scale is 2^-(L-1), so the chain's
// QuantizeLinear(Pow2Quant(y), y_scale) is exactly a + zp.
template <typename T>
void Pow2CodesRow(const Pow2Codes& p, const int32_t* acc, int64_t n, T* out, float* y, int8_t* a) {
  shift::ActQuant q;
  q.pow2 = true;
  q.levels = p.levels;
  for (int k = 0; k < p.levels; ++k) q.thresholds[k] = p.t[k];
  for (int64_t i = 0; i < n; ++i) y[i] = static_cast<float>(acc[i]) * p.s + p.b;
  shift::QuantizeActs(q, y, n, a);
  for (int64_t i = 0; i < n; ++i) {
    const int32_t v = a[i] + p.zp;
    out[i] = static_cast<T>(v < p.lo ? p.lo : (v > p.hi ? p.hi : v));
  }
}

// The pooled case. y = (float(acc) * s + b) is monotone in acc (non-decreasing for s > 0,
// non-increasing for s < 0, constant for s = 0) and so are the division and rounding after,
// so the code of the window's max y is the code of its max acc (s > 0) or min acc (s < 0):
// the pool runs on the int32 sums. A window with no tap inside the input is MaxPool's -inf,
// whose code Compute writes itself (lo; in thresholds mode Pow2Quant's -2^(L-1) + zp, clamped).
#if defined(__SSE2__)
inline __m128i Max32(__m128i a, __m128i b) {  // SSE2 has no pmaxsd
  const __m128i gt = _mm_cmpgt_epi32(a, b);
  return _mm_or_si128(_mm_and_si128(gt, a), _mm_andnot_si128(gt, b));
}
#endif

// One channel's pooled sums: plane [H, W] (rows g.stride apart) -> out [OH, OW], max (take_max) or min.
// Windows with no tap inside the input (possible with large pads or dilations) go to empty_at.
void PoolPlane(const PoolGeometry& g, const int32_t* plane, bool take_max, int32_t* out,
               std::vector<int64_t>* empty_at) {
  // the common 2x2 / stride 2 window without pads or dilation, four outputs per step
#if defined(__SSE2__)
  const bool pairs = g.KH == 2 && g.KW == 2 && g.sh == 2 && g.sw == 2 && g.dh == 1 && g.dw == 1 &&
                     g.pt == 0 && g.pl == 0;
  const __m128i flip = _mm_set1_epi32(take_max ? 0 : -1);  // ~x reverses int32 order: min via max
#endif
  for (int64_t oh = 0; oh < g.OH; ++oh) {
    int32_t* row = out + oh * g.OW;
    int64_t ow = 0;
#if defined(__SSE2__)
    if (pairs) {
      const int32_t* r0 = plane + (2 * oh) * g.stride;
      const int32_t* r1 = r0 + g.stride;
      for (; ow + 4 <= g.OW; ow += 4) {
        const __m128i* p0 = reinterpret_cast<const __m128i*>(r0 + 2 * ow);
        const __m128i* p1 = reinterpret_cast<const __m128i*>(r1 + 2 * ow);
        const __m128i a = Max32(_mm_xor_si128(_mm_loadu_si128(p0), flip),
                                _mm_xor_si128(_mm_loadu_si128(p1), flip));
        const __m128i b = Max32(_mm_xor_si128(_mm_loadu_si128(p0 + 1), flip),
                                _mm_xor_si128(_mm_loadu_si128(p1 + 1), flip));
        const __m128 af = _mm_castsi128_ps(a), bf = _mm_castsi128_ps(b);
        const __m128i even = _mm_castps_si128(_mm_shuffle_ps(af, bf, _MM_SHUFFLE(2, 0, 2, 0)));
        const __m128i odd = _mm_castps_si128(_mm_shuffle_ps(af, bf, _MM_SHUFFLE(3, 1, 3, 1)));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(row + ow), _mm_xor_si128(Max32(even, odd), flip));
      }
    }
#endif
    for (; ow < g.OW; ++ow) {
      bool any = false;
      int32_t best = 0;
      ForEachWindowTap(g, oh, ow, [&](int64_t ih, int64_t iw) {
        const int32_t v = plane[ih * g.stride + iw];
        if (!any || (take_max ? v > best : v < best)) best = v;
        any = true;
      });
      row[ow] = best;
      if (!any) empty_at->push_back(oh * g.OW + ow);
    }
  }
}

const CodesVariant kCodesVariants[] = {
#ifdef QCOMPILE_HAVE_AVX2
    {{"avx2", "avx2", isa::Avx2}, CodesRowAvx2, CodesRowAvx2, Pow2RowAvx2, Pow2RowAvx2},
#endif
    // SSE2 on x86-64 (its baseline), the scalar loop elsewhere
    {{"portable", "", isa::None}, CodesRow<int8_t>, CodesRow<uint8_t>, Pow2CodesRow<int8_t>,
     Pow2CodesRow<uint8_t>},
};
constexpr VariantTable<CodesVariant> kCodesTable{
    kCodesVariants, sizeof(kCodesVariants) / sizeof(kCodesVariants[0]), "QCOMPILE_REQUANTIZE_KERNEL"};

}  // namespace

const VariantTable<CodesVariant>& CodesVariants() { return kCodesTable; }

template <typename T>
void RequantizeSteps::Parse(const Attrs& at, const std::string& label, const std::string& pool_prefix,
                            const std::string& kernel) {
  ParseCodeBounds<T>(at, label, &lo, &hi);
  // kernel_shape absent: no pool; present (even empty, or of another type): a pool to check
  const std::string ks = pool_prefix + "kernel_shape";
  const std::vector<int64_t> absent{-1};
  pool = at.Ints(ks.c_str(), absent) != absent;
  // thresholds absent: the uniform codes; present: Pow2Quant's, checked as Pow2Quant checks them
  pow2 = !at.Floats("thresholds", {}).empty() || at.Ints("thresholds", absent) != absent;
  if (pow2) ParsePow2Thresholds(at, label, "thresholds", &pow2_quant);
  if (!pool && !at.Floats(ks.c_str(), {}).empty())
    Fail(label, "attribute '", ks, "': expected type ints, got floats");
  codes = &SelectVariant(kCodesTable, label, kernel);
  if (pool) pool_attrs.Parse(at, label, /*with_channels=*/false, pool_prefix);
}

template void RequantizeSteps::Parse<int8_t>(const Attrs&, const std::string&, const std::string&,
                                             const std::string&);
template void RequantizeSteps::Parse<uint8_t>(const Attrs&, const std::string&, const std::string&,
                                              const std::string&);

void RequantizeSteps::CheckScale(const std::string& label, const float* ys, int64_t n_ys) const {
  if (pow2 && (n_ys != 1 || ys[0] != std::ldexp(1.0f, -(pow2_quant.levels - 1))))
    Fail(label, "input y_scale: with thresholds (", pow2_quant.levels, " levels) expected the "
         "one scale 2^-", pow2_quant.levels - 1, " of Pow2Quant's codes, got ", ys[0],
         n_ys == 1 ? "" : " and more");
}

PoolGeometry RequantizeSteps::Pool(const std::string& label, const std::vector<int64_t>& shape, int64_t H,
                                   int64_t W, int64_t stride) const {
  const ConvAttrs& p = pool_attrs;
  int64_t OH = 0, OW = 0;
  p.OutputSize(label, shape, H, W, &OH, &OW);
  return {H, W, OH, OW, p.kernel_shape[0], p.kernel_shape[1], p.strides[0], p.strides[1],
          p.dilations[0], p.dilations[1], p.pads[0], p.pads[1], stride};
}

template <typename T>
ChannelCodes<T>::ChannelCodes(const RequantizeSteps& s, const PoolGeometry& g, int64_t n, int32_t zp)
    : s_(s), g_(g), n_(n), zp_(zp) {
  // the code of MaxPool's -inf: lo, or (pow2) Pow2Quant's -2^(L-1) + zp, clamped
  const int64_t minus_inf = s.pow2 ? zp - int64_t{s.pow2_quant.max_abs} : s.lo;
  empty_code_ = static_cast<T>(minus_inf < s.lo ? s.lo : (minus_inf > s.hi ? s.hi : minus_inf));
  if (s.pool) pooled_.resize(static_cast<size_t>(n));
  if (s.pow2) y_row_.resize(static_cast<size_t>(n)), a_row_.resize(static_cast<size_t>(n));
}

template <typename T>
void ChannelCodes<T>::Run(const Codes& k, const int32_t* src, T* dst) {
  if (s_.pool) {
    empty_at_.clear();
    PoolPlane(g_, src, !(k.s < 0.0f), pooled_.data(), &empty_at_);
    src = pooled_.data();
  }
  if (s_.pow2)
    Pow2RowOf<T>(*s_.codes)(Pow2Codes{s_.pow2_quant.thresholds, s_.pow2_quant.levels, k.s, k.b, zp_,
                                      static_cast<int32_t>(s_.lo), static_cast<int32_t>(s_.hi)},
                            src, n_, dst, y_row_.data(), a_row_.data());
  else
    CodesRowOf<T>(*s_.codes)(k, src, n_, dst);
  for (int64_t i : empty_at_) dst[i] = empty_code_;  // MaxPool's -inf
}

template class ChannelCodes<int8_t>;
template class ChannelCodes<uint8_t>;

template <typename T>
RequantizeOp<T>::RequantizeOp(const OrtApi* api, const OrtKernelInfo* info) noexcept {
  try {
    label_ = OpLabel(api, info, "qcompile::Requantize");
    CheckNodeArity(api, info, label_, 5, 1);
    Attrs at(api, info, label_);
    axis_ = at.Int("axis", 1);
    steps_.Parse<T>(at, label_, "", KernelAttr(at));
    if (steps_.pool && axis_ != 1)
      Fail(label_, "attribute axis: a pooled Requantize needs axis 1 (NCHW), got ", axis_);
  } catch (const std::exception& e) {
    init_error_ = e.what();
  }
}

template <typename T>
Ort::Status RequantizeOp<T>::Compute(OrtKernelContext* ctx, const Tensor<int32_t>& acc,
                                     const Tensor<float>& scale,
                                     const Tensor<float>& bias,
                                     const Tensor<float>& y_scale,
                                     const Tensor<T>& y_zero_point,
                                     Tensor<T>& y) {
  return GuardCompute(label_, [&] {
    if (!init_error_.empty()) throw OpError(init_error_);
    const std::vector<int64_t>& shape = acc.Shape();
    const int64_t rank = static_cast<int64_t>(shape.size());
    if (steps_.pool) CheckRank(label_, "acc", shape, 4, "[N, M, H, W] (pooled)");
    const int64_t axis = axis_ < 0 ? axis_ + rank : axis_;
    if (axis < 0 || axis >= rank)
      Fail(label_, "attribute axis: ", axis_, " is out of range for input acc of shape ", ShapeStr(shape));
    // acc is [outer, m, inner] around the channel axis
    const int64_t m = shape[axis];
    const int64_t outer = NumElements(std::vector<int64_t>(shape.begin(), shape.begin() + axis));
    const int64_t inner = NumElements(std::vector<int64_t>(shape.begin() + axis + 1, shape.end()));
    const float* ys = y_scale.Data();
    CheckEpilogueInputs(label_, m, ", axis " + std::to_string(axis_) + " of input acc " + ShapeStr(shape),
                        scale.Shape(), bias.Shape(), y_scale.Shape(), y_zero_point.Shape(), ys);
    const int64_t n_ys = NumElements(y_scale.Shape());
    const int64_t ys_step = n_ys == 1 ? 0 : 1;
    steps_.CheckScale(label_, ys, n_ys);
    const int32_t zp = static_cast<int32_t>(y_zero_point.Data()[0]);
    const float lo_f = static_cast<float>(steps_.lo - zp), hi_f = static_cast<float>(steps_.hi - zp);
    std::vector<int64_t> out_shape = shape;
    PoolGeometry g{};
    if (steps_.pool) {
      g = steps_.Pool(label_, shape, shape[2], shape[3], shape[3]);
      out_shape = {shape[0], m, g.OH, g.OW};
    }
    T* out = y.Allocate(out_shape);
    if (NumElements(out_shape) == 0) return;
    const int32_t* a = acc.Data();
    const float *s = scale.Data(), *b = bias.Data();
    const int64_t out_inner = steps_.pool ? g.OH * g.OW : inner;
    const int64_t per_block = out_inner >= kMinTaskValues ? 1 : (kMinTaskValues + out_inner - 1) / out_inner;
    const int64_t blocks = (m + per_block - 1) / per_block;
    if (inner == 1 && !steps_.pool && !steps_.pow2) {
      // a dense layer's [rows, M]: whole rows per task, vectorized over the channels
      const int64_t rows_per_task = (kMinTaskValues + m - 1) / m;
      const int64_t tasks = (outer + rows_per_task - 1) / rows_per_task;
      ParallelFor(ctx, static_cast<size_t>(tasks), [&](size_t t) {
        const int64_t r0 = static_cast<int64_t>(t) * rows_per_task;
        for (int64_t r = r0; r < r0 + rows_per_task && r < outer; ++r)
          ChannelCodesRow<T>(s, b, ys, ys_step, lo_f, hi_f, zp, a + r * m, m, out + r * m);
      });
      return;
    }
    // tasks: (outer index, channel block)
    ParallelFor(ctx, static_cast<size_t>(outer * blocks), [&](size_t t) {
      const int64_t o = static_cast<int64_t>(t) / blocks;
      const int64_t c0 = static_cast<int64_t>(t) % blocks * per_block;
      ChannelCodes<T> channel(steps_, g, out_inner, zp);
      for (int64_t c = c0; c < c0 + per_block && c < m; ++c)
        channel.Run(Codes{s[c], b[c], ys[c * ys_step], lo_f, hi_f, zp}, a + (o * m + c) * inner,
                    out + (o * m + c) * out_inner);
    });
  });
}

template struct RequantizeOp<int8_t>;
template struct RequantizeOp<uint8_t>;

}  // namespace qcompile
