// The attributes of a uniform (QONNX Quant) activation quantizer that an op applies to its own
// float input: QuantizePack's `scale`, `zero_point`, ... and ShiftConv/ShiftGemm's `act_scale`,
// `act_zero_point`, ... (custom_ops/SPEC.md). One parser, so both check and report alike.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>

#include "op_util.h"
#include "quantize.h"

namespace qcompile {

struct UniformQuantAttrs {
  float scale = 1.0f, zero_point = 0.0f;
  float qmin = 0.0f, qmax = 0.0f;  // as Quant computes them (QuantRange)
  int64_t bitwidth = 0, is_signed = 0, narrow = 0;
  Rounding rounding = Rounding::kRound;
};

// prefix: "" or "act_"; required_note: what the message of a missing required attribute
// (scale, bitwidth) adds after "missing; it is required"; max_abs_zero_point > 0 bounds |zp|.
inline UniformQuantAttrs ParseUniformQuant(const Attrs& at, const std::string& label,
                                           const std::string& prefix, const char* required_note,
                                           float max_abs_zero_point) {
  UniformQuantAttrs q;
  q.scale = at.Float((prefix + "scale").c_str(), -1.0f);
  q.zero_point = at.Float((prefix + "zero_point").c_str(), 0.0f);
  q.bitwidth = at.Int((prefix + "bitwidth").c_str(), -1);
  q.is_signed = at.Int((prefix + "signed").c_str(), 0);
  q.narrow = at.Int((prefix + "narrow").c_str(), 0);
  const std::string rounding = at.String((prefix + "rounding_mode").c_str(), "ROUND");
  if (!(q.scale > 0.0f) || !std::isfinite(q.scale))
    Fail(label, "attribute '", prefix, "scale': expected a finite float > 0, got ", q.scale,
         q.scale == -1.0f ? " (missing; it is required" : "", q.scale == -1.0f ? required_note : "",
         q.scale == -1.0f ? ")" : "");
  const bool integer = std::isfinite(q.zero_point) && q.zero_point == std::floor(q.zero_point);
  if (max_abs_zero_point > 0.0f && (!integer || std::fabs(q.zero_point) > max_abs_zero_point))
    Fail(label, "attribute '", prefix, "zero_point': expected an integer value (|zp| <= ",
         static_cast<int64_t>(max_abs_zero_point), "), got ", q.zero_point);
  if (!integer)
    Fail(label, "attribute '", prefix, "zero_point': expected an integer value, got ", q.zero_point);
  if (q.bitwidth < 1 || q.bitwidth > 8)
    Fail(label, "attribute '", prefix, "bitwidth': expected 1..8, got ", q.bitwidth,
         q.bitwidth == -1 ? " (missing; it is required" : "", q.bitwidth == -1 ? required_note : "",
         q.bitwidth == -1 ? ")" : "");
  if (q.is_signed != 0 && q.is_signed != 1)
    Fail(label, "attribute '", prefix, "signed': expected 0 or 1, got ", q.is_signed);
  if (q.narrow != 0 && q.narrow != 1)
    Fail(label, "attribute '", prefix, "narrow': expected 0 or 1, got ", q.narrow);
  if (!ParseRounding(rounding, &q.rounding))
    Fail(label, "attribute '", prefix, "rounding_mode': expected ROUND, CEIL, FLOOR or ",
         "ROUND_TO_ZERO, got '", rounding, "'");
  QuantRange(static_cast<double>(q.bitwidth), q.is_signed, q.narrow, &q.qmin, &q.qmax);
  return q;
}

}  // namespace qcompile
