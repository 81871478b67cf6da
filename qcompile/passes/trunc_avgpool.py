"""Brevitas's TruncAvgPool2d on quantized codes: an exact integer sum-pool and shift, no float pool.

Pattern:  Y = Trunc(AveragePool(Quant(x, s, 0, b)), s_t, 0, b_in, s_o, b_o)      (or GlobalAveragePool)
Rewrite:  q = [Clip](QuantizeLinear(x, s, 0))            the Quant's codes, int8 / uint8
          S = ReduceSum(Reshape(Cast(q, int32)))          the integer sum over each pooling window
          c = Clip(round_mode(S / t), qmin_o, qmax_o)     in int32 ops (t = 2^k: Div of a non-negative)
          Y = Cast(c, float) * s_o
and, when the next layer is an int8 one reading Y through QuantizeLinear(Y, s_o, zp):
          codes = Cast(c + zp, int8 / uint8)              (no float tensor between the two)

Why it is exact. The Quant's values are v_i = q_i * s (z = 0, so q_i = QuantizeLinear's codes, as
in qcompile.int8_plan). The reference pools them in float32 and Trunc computes round(avg / s_t):
with K the window size and s_t = s / K up to float rounding, avg / s_t = S (1 + e), S = sum q_i,
|e| <= (K + 6) * 2^-24 + |s / (K s_t) - 1| (the sum in any order, the mean's divide or multiply,
the product q_i * s, Trunc's divide). `plan` refuses unless |S e| < 1/4 for every S the codes can
make, so Trunc's round gives S exactly. The trunc scale t = 2^round(log2(s_o / s_t)) is a power of
two >= 1; qonnx clamps S / t before rounding, which equals clamping after it (every rounding mode
is monotone and keeps integers). Each mode in integers, with B a multiple of 2t making the
dividend non-negative (so Div truncating and flooring agree, and parity is kept):
  FLOOR  (S + B) / t - B/t               CEIL  (S + t - 1 + B) / t - B/t
  ROUND / HALF_EVEN  r = (S + t/2 + B) / t, minus 1 where (S + t/2 + B) mod t == 0 and r is odd
  DOWN / UP / HALF_DOWN / HALF_UP (symmetric about 0): sign(S) * ((|S| + a) / t), a = 0, t - 1,
                     t/2 - 1, t/2
Trunc's output (c - 0/t) * s_o is one float32 multiply, the same one the rewrite does (a -0.0
of the reference comes out +0.0: equal as values, and to every op after). ±inf saturates to the
grid's ends in both. A NaN input is where they part: the reference pools NaN into NaN, while
QuantizeLinear gives NaN the code 0 (as in every layer lowered to int8 arithmetic).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import MatchResult, pattern

from qcompile.base.domains import QONNX_DOMAIN
from qcompile.base.ir_readers import const_array, int_attr, ints_attr, node_label, str_attr
from qcompile.base.metadata import FLOAT_ENCODING, REF_KEY, ref_entry
from qcompile.ops.qonnx import int_range
from qcompile.ops.trunc import TRUNC_ROUNDING, trunc_scale
from qcompile.passes.rewrite import ReportingRule, RuleSetPass

# metadata on the rewrite's final Mul: the int32 codes' range "lo,hi" (read by the int8 rule)
CODES_KEY = "qcompile.trunc_pool_codes"
U = 2.0**-24  # float32's unit roundoff
MAX_SHIFT = 24  # t = 2^k beyond this: S / t is 0 for any sum 8-bit codes can make in a 2^16 window


def _scalar(value: ir.Value | None) -> float | None:
    arr = const_array(value)
    return float(arr.reshape(-1)[0]) if arr is not None and arr.size == 1 else None


@dataclass(frozen=True)
class TruncPoolPlan:
    """The integer pool: input codes of the Quant, windows, the shift and rounding, the output grid."""

    in_scale: np.float32
    in_dtype: type  # np.int8 or np.uint8 (QuantizeLinear's codes, zero point 0)
    in_lo: int
    in_hi: int
    window: tuple[int, int]  # (kh, kw); each equals the input size or tiles it (stride == kernel)
    spatial: tuple[int, int]  # (H, W) of the pooled input
    shift: int  # t = 2^shift
    rounding: str  # upper-case TRUNC_ROUNDING key
    out_lo: int
    out_hi: int
    out_scale: np.float32


def _pool_window(pool: ir.Node, spatial: tuple[int, int]) -> tuple[int, int] | str:
    """(kh, kw) when the pool's windows tile its input exactly (a sum by reshape), else why not."""
    if pool.op_type == "GlobalAveragePool":
        return spatial
    attr = f"AveragePool {node_label(pool)!r}"
    kernel = ints_attr(pool, "kernel_shape", [])
    if len(kernel) != 2:
        return f"{attr}: attribute kernel_shape {kernel} is not 2-D"
    strides = ints_attr(pool, "strides", [1, 1])
    if any(ints_attr(pool, "pads", [0, 0, 0, 0])) or str_attr(pool, "auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        return f"{attr}: attribute pads / auto_pad pads the input (a padded window's count is not its size)"
    if int_attr(pool, "ceil_mode", 0) or any(d != 1 for d in ints_attr(pool, "dilations", [1, 1])):
        return f"{attr}: attribute ceil_mode / dilations is set (partial or dilated windows)"
    for k, s, n in zip(kernel, strides, spatial, strict=True):
        if k != n and (s != k or n % k):
            return (f"{attr}: attributes kernel_shape {kernel} / strides {strides} on a {spatial[0]}x{spatial[1]} "
                    "input: windows overlap or leave a remainder (only tiling or global windows are summed exactly)")
    return kernel[0], kernel[1]


def _spatial(pool: ir.Node, quant: ir.Node) -> tuple[int, int] | None:
    for value in (pool.inputs[0], quant.inputs[0]):  # a Quant keeps its input's shape
        shape = value.shape
        if shape is not None and len(shape) == 4 and all(isinstance(d, int) for d in shape[2:]):
            return int(shape[2]), int(shape[3])
    return None


def plan(quant: ir.Node, pool: ir.Node, trunc: ir.Node) -> TruncPoolPlan | str:
    """How Trunc(pool(Quant(x))) runs as an integer pool exactly, or why it cannot (naming the node
    and the attribute or input)."""
    where = f"Trunc {node_label(trunc)!r}"
    s, z, b = (_scalar(v) for v in quant.inputs[1:4])
    qname = f"the pooled Quant {node_label(quant)!r}"
    if s is None or not s > 0 or z != 0 or b is None or b != int(b) or not 1 <= b <= 8:
        return f"{qname}: scale, zero point 0 and bit width 1..8 are not scalar constants"
    if str_attr(quant, "rounding_mode", "ROUND") != "ROUND":
        return f"{qname}: attribute rounding_mode is not ROUND (QuantizeLinear rounds to nearest even)"
    in_lo, in_hi = (int(v) for v in int_range(b, int_attr(quant, "signed", 1), int_attr(quant, "narrow", 0)))
    spatial = _spatial(pool, quant)
    if spatial is None:
        return f"{where}: the pooled input's spatial size is not known (no static shape)"
    window = _pool_window(pool, spatial)
    if isinstance(window, str):
        return window
    if len(trunc.inputs) != 6:
        return f"{where}: version 1 (5 inputs) is not lowered (its output keeps the input scale)"
    st, zt, so, bo = (_scalar(trunc.inputs[i]) for i in (1, 2, 4, 5))
    if st is None or so is None or bo is None or not (st > 0 and so > 0):
        return f"{where}: inputs scale / output_scale / output_bit_width are not positive scalar constants"
    if zt != 0:
        return f"{where}: input zeropt is {zt}, not 0"
    count = window[0] * window[1]
    ratio_error = abs(float(np.float32(s)) / (count * float(np.float32(st))) - 1.0)
    if ratio_error > 2.0**-20:
        return f"{where}: input scale {st:g} is not the pooled Quant's scale {s:g} / {count} (the window size)"
    s_abs = count * max(abs(in_lo), abs(in_hi))
    if s_abs * ((count + 6) * U + ratio_error) >= 0.25:
        return f"{where}: a {count}-value window of {int(b)}-bit codes is too large for float32 to pool exactly"
    t = float(trunc_scale(np.float32(st), np.float32(so)))
    shift = int(np.log2(t)) if t >= 1 else -1
    if shift < 0 or 2.0**shift != t or shift > MAX_SHIFT:
        return f"{where}: input output_scale / scale gives a trunc scale of {t:g}, not a power of two 1..2^{MAX_SHIFT}"
    mode = str_attr(trunc, "rounding_mode", "FLOOR").upper()
    if mode not in TRUNC_ROUNDING:
        return f"{where}: attribute rounding_mode {mode!r} is not one of {', '.join(sorted(TRUNC_ROUNDING))}"
    if bo != int(bo) or not 1 <= bo <= 16:
        return f"{where}: input output_bit_width {bo:g} is not an integer in 1..16"
    out_lo, out_hi = (int(v) for v in int_range(bo, int_attr(trunc, "signed", 1), int_attr(trunc, "narrow", 0)))
    dtype = np.uint8 if in_lo >= 0 else np.int8
    return TruncPoolPlan(np.float32(s), dtype, in_lo, in_hi, window, spatial, shift, mode, out_lo, out_hi,
                         np.float32(so))


def _i32(op, value: int, name: str) -> ir.Value:
    return op.initializer(ir.tensor(np.array(value, np.int32)), name)


def _sum_pool(op, codes: ir.Value, p: TruncPoolPlan, name: str) -> ir.Value:
    """int32 sums over each window: a global sum, or a reshape into tiles and a sum over them."""
    a = op.Cast(codes, to=ir.DataType.INT32)
    if p.window == p.spatial:
        axes = op.initializer(ir.tensor(np.array([2, 3], np.int64)), f"{name}/axes")
        return op.ReduceSum(a, axes, keepdims=1)
    (h, w), (kh, kw) = p.spatial, p.window
    tiles = np.array([0, 0, h // kh, kh, w // kw, kw], np.int64)  # 0: keep N and C (allowzero=0)
    a = op.Reshape(a, op.initializer(ir.tensor(tiles), f"{name}/tiles"))
    axes = op.initializer(ir.tensor(np.array([3, 5], np.int64)), f"{name}/axes")
    return op.ReduceSum(a, axes, keepdims=0)


def _round_shift(op, total: ir.Value, p: TruncPoolPlan, lo: int, name: str) -> ir.Value:
    """round_mode(total / 2^shift) in int32 ops, for sums total >= lo (see the module docstring)."""
    t = 1 << p.shift
    if t == 1:
        return total  # every mode keeps an integer
    mode = p.rounding
    if lo >= 0:  # non-negative sums: the modes symmetric about 0 are floors of S + a
        mode = {"DOWN": "FLOOR", "UP": "CEIL"}.get(mode, mode)
        if mode in ("HALF_UP", "HALF_DOWN"):
            addend = t // 2 if mode == "HALF_UP" else t // 2 - 1
            return op.Div(op.Add(total, _i32(op, addend, f"{name}/addend")), _i32(op, t, f"{name}/t"))
    elif mode in ("DOWN", "UP", "HALF_UP", "HALF_DOWN"):  # sign(S) * ((|S| + a) / t)
        addend = {"DOWN": 0, "UP": t - 1, "HALF_DOWN": t // 2 - 1, "HALF_UP": t // 2}[mode]
        size = op.Div(op.Add(op.Abs(total), _i32(op, addend, f"{name}/addend")), _i32(op, t, f"{name}/t"))
        return op.Mul(op.Sign(total), size)
    addend = {"FLOOR": 0, "CEIL": t - 1, "ROUND": t // 2, "HALF_EVEN": t // 2}[mode]
    offset = -(-max(0, -(lo + addend)) // (2 * t)) * 2 * t  # a multiple of 2t: parity is kept
    dividend = op.Add(total, _i32(op, addend + offset, f"{name}/addend"))
    tv = _i32(op, t, f"{name}/t")
    r = op.Div(dividend, tv)
    if mode in ("ROUND", "HALF_EVEN"):  # a tie (remainder 0 after adding t/2) goes to the even one
        tie = op.Cast(op.Equal(op.Mod(dividend, tv), _i32(op, 0, f"{name}/zero")), to=ir.DataType.INT32)
        r = op.Sub(r, op.Mul(tie, op.Mod(r, _i32(op, 2, f"{name}/two"))))
    return op.Sub(r, _i32(op, offset // t, f"{name}/offset")) if offset else r


def integer_trunc_pool(op, x: ir.Value, p: TruncPoolPlan, name: str) -> ir.Value:
    """The int32 output codes c of Trunc(pool(Quant(x))), from the float x before the Quant."""
    info = np.iinfo(p.in_dtype)
    codes = op.QuantizeLinear(x, op.initializer(ir.tensor(np.array(p.in_scale, np.float32)), f"{name}/x_scale"),
                              op.initializer(ir.tensor(np.array(0, p.in_dtype)), f"{name}/x_zero_point"))
    if p.in_lo > info.min or p.in_hi < info.max:  # a grid narrower than the type
        codes = op.Clip(codes, op.initializer(ir.tensor(np.array(p.in_lo, p.in_dtype)), f"{name}/x_lo"),
                        op.initializer(ir.tensor(np.array(p.in_hi, p.in_dtype)), f"{name}/x_hi"))
    total = _sum_pool(op, codes, p, name)
    count = p.window[0] * p.window[1]
    c = _round_shift(op, total, p, count * p.in_lo, name)
    return op.Clip(c, _i32(op, p.out_lo, f"{name}/lo"), _i32(op, p.out_hi, f"{name}/hi"))


class TruncAvgPoolToIntegerPool(ReportingRule):
    def __init__(self, pool_op: str):
        super().__init__(name=f"Trunc{pool_op}ToIntegerPool")
        self.pool_op = pool_op

    def pattern(self, op, x, s, z, b, st):
        q = op.Quant(x, s, z, b, _domain=QONNX_DOMAIN, _allow_other_attributes=True, _outputs=["q"])
        pooled = getattr(op, self.pool_op)(q, _allow_other_attributes=True, _outputs=["pooled"])
        # version 1 (5 inputs) or 2 (6): `plan` reads the rest off the node, and says why it refuses
        return op.Trunc(pooled, st, _domain=QONNX_DOMAIN, _allow_other_inputs=True, _allow_other_attributes=True,
                        _outputs=["y"])

    def check_match(self, context, q, pooled, y, **_) -> MatchResult:
        result = plan(q.producer(), pooled.producer(), y.producer())
        return MatchResult().fail(result) if isinstance(result, str) else MatchResult()

    def rewrite(self, op, x, q, pooled, y, **_):
        trunc = y.producer()
        p = plan(q.producer(), pooled.producer(), trunc)
        name = node_label(trunc)
        c = integer_trunc_pool(op, x, p, name)
        out = op.Mul(op.Cast(c, to=ir.DataType.FLOAT),
                     op.initializer(ir.tensor(np.array(p.out_scale, np.float32)), f"{name}/output_scale"))
        node = out.producer()
        node.name = f"{name}/integer_pool"
        node.metadata_props[CODES_KEY] = f"{p.out_lo},{p.out_hi}"
        node.metadata_props[REF_KEY] = ref_entry(y.name, FLOAT_ENCODING)
        return out


class IntegerPoolCodesIntoInt8(ReportingRule):
    """QuantizeLinear(c * s_o, s_o, zp) of the integer pool's output is c + zp: the int8 layer after
    the pool reads the codes (s_o * c / s_o is within an ulp of c, which QuantizeLinear's rounding
    restores; c + zp is inside the type, checked)."""

    def __init__(self, reshape: str | None):
        super().__init__(name=f"IntegerPoolCodesIntoInt8{reshape or ''}")
        self.reshape = reshape

    def pattern(self, op, c, so, shape, s2, zp):
        y = op.Mul(op.Cast(c, _allow_other_attributes=True), so, _outputs=["y"])
        if self.reshape == "Reshape":
            y = op.Reshape(y, shape, _allow_other_attributes=True, _outputs=["moved"])
        elif self.reshape == "Flatten":
            y = op.Flatten(y, _allow_other_attributes=True, _outputs=["moved"])
        return op.QuantizeLinear(y, s2, zp, _allow_other_attributes=True, _outputs=["codes"])

    def check_match(self, context, y, so, s2, zp, codes, **_) -> MatchResult:
        result = MatchResult()
        mark = y.producer().metadata_props.get(CODES_KEY)
        if mark is None:
            return result.fail("not the integer pool's output")
        zero = const_array(zp)
        if _scalar(so) is None or _scalar(so) != _scalar(s2) or zero is None or zero.size != 1:
            return result.fail("the int8 layer's quantizer is not the pool's output grid")
        lo, hi = (int(v) for v in mark.split(","))
        info, z = np.iinfo(zero.dtype), int(zero.reshape(-1)[0])
        if lo + z < info.min or hi + z > info.max:
            return result.fail(f"the pool's codes [{lo}, {hi}] + {z} do not fit {zero.dtype}")
        if "axis" in codes.producer().attributes or "saturate" in codes.producer().attributes:
            return result.fail("the int8 layer's QuantizeLinear has attributes the rule does not know")
        return result

    def rewrite(self, op, c, zp, y, moved=None, shape=None, codes=None, **_):
        zero = const_array(zp)
        z = int(zero.reshape(-1)[0])
        dtype = ir.DataType.from_numpy(zero.dtype)
        shifted = op.Add(c, _i32(op, z, f"{y.producer().name}/zero_point")) if z else c
        out = op.Cast(shifted, to=dtype)
        if self.reshape == "Reshape":
            attrs = dict(moved.producer().attributes.items())
            out = op.Reshape(out, shape, **attrs)
        elif self.reshape == "Flatten":
            out = op.Flatten(out, **dict(moved.producer().attributes.items()))
        return out


def trunc_pool_rules() -> pattern.RewriteRuleSet:
    rules = [TruncAvgPoolToIntegerPool.rule(p) for p in ("AveragePool", "GlobalAveragePool")]
    rules += [IntegerPoolCodesIntoInt8.rule(r) for r in (None, "Reshape", "Flatten")]
    return pattern.RewriteRuleSet(rules)


class TruncAvgPoolToIntegerPoolPass(RuleSetPass):
    """Trunc(AveragePool(Quant(x))) becomes an integer sum-pool and shift on the Quant's codes; an
    int8 layer after it reads those codes."""

    make_rules = staticmethod(trunc_pool_rules)
