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
struct PoolGeometry {
  int64_t H, W, OH, OW, KH, KW, sh, sw, dh, dw, pt, pl;
};

#if defined(__SSE2__)
inline __m128i Max32(__m128i a, __m128i b) {  // SSE2 has no pmaxsd
  const __m128i gt = _mm_cmpgt_epi32(a, b);
  return _mm_or_si128(_mm_and_si128(gt, a), _mm_andnot_si128(gt, b));
}
#endif

// One channel's pooled sums: plane [H, W] -> out [OH, OW], max (take_max) or min.
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
      const int32_t* r0 = plane + (2 * oh) * g.W;
      const int32_t* r1 = r0 + g.W;
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
        const int32_t v = plane[ih * g.W + iw];
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
RequantizeOp<T>::RequantizeOp(const OrtApi* api, const OrtKernelInfo* info) noexcept {
  try {
    label_ = OpLabel(api, info, "qcompile::Requantize");
    CheckNodeArity(api, info, label_, 5, 1);
    Attrs at(api, info, label_);
    axis_ = at.Int("axis", 1);
    ParseCodeBounds<T>(at, label_, &lo_, &hi_);
    // kernel_shape absent: no pool; present (even empty, or of another type): a pool to check
    const std::vector<int64_t> absent{-1};
    pool_ = at.Ints("kernel_shape", absent) != absent;
    // thresholds absent: the uniform codes; present: Pow2Quant's, checked as Pow2Quant checks them
    pow2_ = !at.Floats("thresholds", {}).empty() || at.Ints("thresholds", absent) != absent;
    if (pow2_) ParsePow2Thresholds(at, label_, "thresholds", &pow2_quant_);
    if (!pool_ && !at.Floats("kernel_shape", {}).empty())
      Fail(label_, "attribute 'kernel_shape': expected type ints, got floats");
    codes_ = &SelectVariant(kCodesTable, label_, KernelAttr(at));
    if (pool_) {
      pool_attrs_.Parse(at, label_, /*with_channels=*/false);
      if (axis_ != 1) Fail(label_, "attribute axis: a pooled Requantize needs axis 1 (NCHW), got ", axis_);
    }
  } catch (const std::exception& e) {
    init_error_ = e.what();
  }
}

template <typename T>
Ort::Status RequantizeOp<T>::Compute(OrtKernelContext* ctx, const Ort::Custom::Tensor<int32_t>& acc,
                                     const Ort::Custom::Tensor<float>& scale,
                                     const Ort::Custom::Tensor<float>& bias,
                                     const Ort::Custom::Tensor<float>& y_scale,
                                     const Ort::Custom::Tensor<T>& y_zero_point,
                                     Ort::Custom::Tensor<T>& y) {
  return GuardCompute(label_, [&] {
    if (!init_error_.empty()) throw OpError(init_error_);
    const std::vector<int64_t>& shape = acc.Shape();
    const int64_t rank = static_cast<int64_t>(shape.size());
    if (pool_) CheckRank(label_, "acc", shape, 4, "[N, M, H, W] (pooled)");
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
    if (pow2_ && (n_ys != 1 || ys[0] != std::ldexp(1.0f, -(pow2_quant_.levels - 1))))
      Fail(label_, "input y_scale: with thresholds (", pow2_quant_.levels, " levels) expected the "
           "one scale 2^-", pow2_quant_.levels - 1, " of Pow2Quant's codes, got ", ys[0],
           n_ys == 1 ? "" : " and more");
    const int32_t zp = static_cast<int32_t>(y_zero_point.Data()[0]);
    const float lo_f = static_cast<float>(lo_ - zp), hi_f = static_cast<float>(hi_ - zp);
    std::vector<int64_t> out_shape = shape;
    PoolGeometry g{};
    if (pool_) {
      const ConvAttrs& p = pool_attrs_;
      int64_t OH = 0, OW = 0;
      p.OutputSize(label_, shape, shape[2], shape[3], &OH, &OW);
      g = {shape[2], shape[3], OH, OW, p.kernel_shape[0], p.kernel_shape[1], p.strides[0],
           p.strides[1], p.dilations[0], p.dilations[1], p.pads[0], p.pads[1]};
      out_shape = {shape[0], m, OH, OW};
    }
    T* out = y.Allocate(out_shape);
    if (NumElements(out_shape) == 0) return;
    const int32_t* a = acc.Data();
    const float *s = scale.Data(), *b = bias.Data();
    const int64_t out_inner = pool_ ? g.OH * g.OW : inner;
    const int64_t per_block = out_inner >= kMinTaskValues ? 1 : (kMinTaskValues + out_inner - 1) / out_inner;
    const int64_t blocks = (m + per_block - 1) / per_block;
    // the code of MaxPool's -inf: lo, or (pow2) Pow2Quant's -2^(L-1) + zp, clamped
    const int64_t minus_inf = pow2_ ? zp - int64_t{pow2_quant_.max_abs} : lo_;
    const T empty_code = static_cast<T>(minus_inf < lo_ ? lo_ : (minus_inf > hi_ ? hi_ : minus_inf));
    if (inner == 1 && !pool_ && !pow2_) {
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
      std::vector<int32_t> pooled(pool_ ? static_cast<size_t>(out_inner) : 0);
      std::vector<int64_t> empty_at;
      std::vector<float> y_row(pow2_ ? static_cast<size_t>(out_inner) : 0);
      std::vector<int8_t> a_row(pow2_ ? static_cast<size_t>(out_inner) : 0);
      auto codes = [&](const Codes& k, const int32_t* src, int64_t n, T* dst) {
        if (pow2_)
          Pow2RowOf<T>(*codes_)(Pow2Codes{pow2_quant_.thresholds, pow2_quant_.levels, k.s, k.b, zp,
                                          static_cast<int32_t>(lo_), static_cast<int32_t>(hi_)},
                                src, n, dst, y_row.data(), a_row.data());
        else
          CodesRowOf<T>(*codes_)(k, src, n, dst);
      };
      for (int64_t c = c0; c < c0 + per_block && c < m; ++c) {
        const Codes k{s[c], b[c], ys[c * ys_step], lo_f, hi_f, zp};
        const int32_t* src = a + (o * m + c) * inner;
        T* dst = out + (o * m + c) * out_inner;
        if (!pool_) {
          codes(k, src, inner, dst);
          continue;
        }
        empty_at.clear();
        PoolPlane(g, src, !(s[c] < 0.0f), pooled.data(), &empty_at);
        codes(k, pooled.data(), out_inner, dst);
        for (int64_t i : empty_at) dst[i] = empty_code;  // MaxPool's -inf
      }
    });
  });
}

template struct RequantizeOp<int8_t>;
template struct RequantizeOp<uint8_t>;

}  // namespace qcompile
