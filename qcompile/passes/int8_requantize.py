"""An int8 layer feeding another int8 layer writes the next one's codes in one op: qcompile::Requantize.

Pattern:  codes = [Clip](QuantizeLinear([MaxPool](Cast(acc) * s + b), y_scale, y_zp), lo, hi)
          (acc from ConvInteger / MatMulInteger: the int8 lowering's epilogue, with whatever
          FoldAffineIntoInt8Pass folded into s and b; a MaxPool that Int8CodesThroughMaxPoolPass
          left on the floats; then the next int8 layer's input quantizer)
Rewrite:  codes = Requantize(acc, s, b, y_scale, y_zp, axis, lo, hi[, the MaxPool's attributes])

Why it is exact: Requantize rounds as the chain it replaces does (float32 multiply, then add, then
MLAS' divide, clamp and round half to even; custom_ops/SPEC.md), so the codes are the same, bit for
bit; it pools the int32 sums, which gives the same codes because every step after is monotone in
the sum (max for a positive channel scale, min for a negative one). Tests compare the two on
rounding ties. Why: the chain is five or six passes over the tensor (~25% of an int8 CNV's time
at batch 1); Requantize is one.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import MatchResult, pattern

from qcompile.base.domains import QCOMPILE_DOMAIN, QONNX_DOMAIN
from qcompile.base.ir_readers import const_array, int_attr, str_attr
from qcompile.base.metadata import FOLDED_KEY, LAYER_KEY
from qcompile.base.quantizer_nodes import pow2quant_thresholds
from qcompile.ops.qonnx import int_range
from qcompile.passes.chains import maxpool_refusal, maxpool_window
from qcompile.passes.fold_int8_epilogue import FoldAffineIntoInt8
from qcompile.passes.rewrite import ReportingRule, RuleSetPass

_CODE_TYPES = (np.int8, np.uint8)


def _channel_axis(param: np.ndarray) -> int | None:
    """The axis (from the end) along which a Mul/Add constant of the epilogue varies: the lowering
    writes [M] (dense: the last axis) or [1, M, 1, 1] (conv: axis 1); None for any other layout."""
    if param.ndim == 1:
        return -1
    if param.ndim >= 2 and all(d == 1 for i, d in enumerate(param.shape) if i != 1):
        return 1 - param.ndim
    return None


class _Int8EpiloguePattern(ReportingRule):
    """What the three rules share: the int8 lowering's epilogue Cast(acc) * s + b at the start of
    the pattern, its checks, and the Requantize that replaces it (with the MaxPool between the
    layers, if any, and the ops it took in named in the layer table)."""

    _epilogue = staticmethod(FoldAffineIntoInt8._epilogue)

    @staticmethod
    def epilogue_refusal(acc: ir.Value, yo: ir.Value, s: ir.Value, b: ir.Value,
                         pooled: ir.Value | None = None) -> str:
        """Why the match is not an int8 layer's per-channel epilogue (through a MaxPool this
        rewrite can run), "" when it is."""
        producer = acc.producer()
        if producer is None or producer.op_type not in ("ConvInteger", "MatMulInteger") or \
                LAYER_KEY not in yo.producer().metadata_props:
            return "not the epilogue of an int8 layer"
        scale, bias = const_array(s), const_array(b)
        if scale is None or bias is None:
            return "the epilogue's scale / bias are not constant"
        axis = _channel_axis(scale)
        if axis is None or _channel_axis(bias) != axis or scale.size != bias.size:
            return f"the epilogue's scale {list(scale.shape)} / bias {list(bias.shape)} are not per channel"
        if pooled is not None:
            if producer.op_type != "ConvInteger" or axis != -3:  # a 2-D conv's [1, M, 1, 1]: NCHW's channels
                return "a MaxPool after a dense layer"
            return maxpool_refusal(pooled.producer())
        return ""

    @staticmethod
    def requantize(op, acc: ir.Value, s: ir.Value, b: ir.Value, ys: ir.Value, zp: ir.Value, yo: ir.Value,
                   pooled: ir.Value | None, took: tuple[str, ...], **attrs) -> ir.Value:
        """Requantize(acc, ...) for the layer whose epilogue yo is; `took`: the ops it replaced
        after the epilogue and its MaxPool, for the layer table."""
        scale, bias = const_array(s), const_array(b)
        layer = yo.producer().metadata_props[LAYER_KEY]
        window = {} if pooled is None else maxpool_window(pooled.producer())
        codes = op.Requantize(
            acc, op.initializer(ir.tensor(np.ascontiguousarray(scale.reshape(-1))), f"{layer}/rq_scale"),
            op.initializer(ir.tensor(np.ascontiguousarray(bias.reshape(-1))), f"{layer}/rq_bias"),
            ys, zp, axis=1 if pooled is not None else _channel_axis(scale), **window, **attrs,
            _domain=QCOMPILE_DOMAIN)
        node = codes.producer()
        node.name = f"{layer}/requantize"
        # the codes stand for no reference tensor (the next layer's quantizer is gone): no REF_KEY
        node.metadata_props[LAYER_KEY] = layer
        int_op = acc.producer()  # the table reads the folded ops from the layer's first node
        folded = [f for f in int_op.metadata_props.get(FOLDED_KEY, "").split(",") if f]
        pool = ("MaxPool",) if pooled is not None else ()
        int_op.metadata_props[FOLDED_KEY] = ",".join((*folded, *pool, *took, "Requantize"))
        return codes


class Int8EpilogueToRequantize(_Int8EpiloguePattern):
    """The plain chain, and two forms the int8 lowering writes in front of a layer (MobileNet's
    pointwise conv -> ReLU -> depthwise conv -> ReLU -> pointwise conv), without a MaxPool:
    - a Relu before the quantizer, when the codes' low bound lo is at least the zero point: every
      y <= 0 then gives code lo with or without it (round(y / y_scale) <= 0 <= lo - zp), and a
      NaN gives lo either way;
    - a depthwise conv's per-channel input scale d[c], QuantizeLinear(Div(y, d), 1): Requantize
      with y_scale d computes y / d[c] itself, and QuantizeLinear's division by 1 changes nothing."""

    def __init__(self, clipped: bool, pooled: bool, relu: bool = False, divided: bool = False):
        super().__init__(name=f"Int8EpilogueToRequantize{'Pooled' if pooled else ''}{'Relu' if relu else ''}"
                              f"{'Divided' if divided else ''}{'Clipped' if clipped else ''}")
        self.clipped, self.pooled, self.relu, self.divided = clipped, pooled, relu, divided

    def pattern(self, op, acc, s, b, ys, zp, lo, hi):
        y = self._epilogue(op, acc, s, b)
        if self.pooled:
            y = op.MaxPool(y, _allow_other_attributes=True, _outputs=["pooled"])
        if self.relu:
            y = op.Relu(y, _outputs=["r"])
        if self.divided:  # Div(y, d): d read off the matched node (a pattern input cannot be optional)
            y = op.Div(y, _allow_other_inputs=True, _outputs=["divided"])
        codes = op.QuantizeLinear(y, ys, zp, _allow_other_attributes=True, _outputs=["q"])
        return op.Clip(codes, lo, hi) if self.clipped else codes

    def _divisor(self, divided: ir.Value, s: ir.Value) -> np.ndarray | None:
        """The Div's per-channel divisor, laid out as the epilogue's scale, if it is one."""
        node = divided.producer()
        d = const_array(node.inputs[1]) if len(node.inputs) == 2 and node.inputs[1] is not None else None
        scale = const_array(s)
        if d is None or scale is None or d.size != scale.size or _channel_axis(d) != _channel_axis(scale) \
                or not np.all(d > 0) or not np.all(np.isfinite(d)):
            return None
        return d.astype(np.float32)

    def check_match(self, context, acc, s, b, ys, zp, yo, q, lo=None, hi=None, pooled=None, r=None,
                    divided=None, **_) -> MatchResult:
        result = MatchResult()
        if refusal := self.epilogue_refusal(acc, yo, s, b, pooled):
            return result.fail(refusal)
        if any(len(v.uses()) != 1 or v.is_graph_output() for v in (yo, pooled, r, divided) if v is not None):
            return result.fail("a value between the int8 layers has other readers")
        if self.divided:
            if self._divisor(divided, s) is None:
                return result.fail("the Div before the quantizer is not by positive per-channel constants")
            y_scale = const_array(ys)
            if y_scale is None or y_scale.size != 1 or float(y_scale.reshape(-1)[0]) != 1.0:
                return result.fail("a Div before a quantizer whose scale is not 1")
        if self.relu:
            zero = const_array(zp)
            low = const_array(lo) if self.clipped else None
            if zero is None or zero.size != 1:
                return result.fail("the quantizer's zero point is not constant")
            lo_code = int(low.reshape(-1)[0]) if low is not None and low.size == 1 else int(np.iinfo(zero.dtype).min)
            if lo_code < int(zero.reshape(-1)[0]):
                return result.fail("a Relu before codes that reach below the zero point")
        if not self.clipped and any(use.node.op_type == "Clip" for use in q.uses()):
            return result.fail("a Clip follows: the clipped rule takes it")
        y_scale, zero = const_array(ys), const_array(zp)
        if y_scale is None or zero is None:
            return result.fail("the quantizer's scale / zero point are not constant")
        if y_scale.size != 1 or zero.size != 1 or zero.dtype.type not in _CODE_TYPES:
            return result.fail("the next quantizer is not per-tensor int8 / uint8")
        if not float(y_scale.reshape(-1)[0]) > 0:
            return result.fail("the next quantizer's scale is not positive")
        if self.clipped:
            bounds = const_array(lo), const_array(hi)
            if any(v is None or v.size != 1 or v.dtype != zero.dtype for v in bounds):
                return result.fail("the Clip after the quantizer has no constant bounds of the codes' type")
        return result

    def rewrite(self, op, acc, s, b, ys, zp, yo, lo=None, hi=None, pooled=None, divided=None, **_):
        info = np.iinfo(const_array(zp).dtype)
        lo_v = int(const_array(lo).reshape(-1)[0]) if self.clipped else int(info.min)
        hi_v = int(const_array(hi).reshape(-1)[0]) if self.clipped else int(info.max)
        took = ("Relu",) * self.relu + ("Div",) * self.divided
        if self.divided:  # y_scale 1 and the divisor d: Requantize's per-channel y_scale is d
            layer = yo.producer().metadata_props[LAYER_KEY]
            d = self._divisor(divided, s)
            ys = op.initializer(ir.tensor(np.ascontiguousarray(d.reshape(-1))), f"{layer}/rq_y_scale")
        return self.requantize(op, acc, s, b, ys, zp, yo, pooled, took, lo=lo_v, hi=hi_v)


class Int8EpilogueToPow2Codes(_Int8EpiloguePattern):
    """The next int8 layer reads Pow2Quant's codes (AQE's power-of-two activations, int8_plan):

        QuantizeLinear(Pow2Quant([Clip]([MaxPool](Cast(acc) * s + b))), 2^-(L-1), zp)
     -> Requantize(acc, s, b, 2^-(L-1), zp, thresholds=...[, the MaxPool's attributes])

    A Clip whose bounds lie beyond the largest threshold changes no code (|clip(y)| reaches the
    same thresholds with the same sign), so it goes; Pow2Quant's code is non-decreasing in y, so
    the pool runs on the sums as for uniform codes."""

    def __init__(self, clipped: bool, pooled: bool):
        super().__init__(name=f"Int8EpilogueTo{'Pooled' if pooled else ''}{'Clipped' if clipped else ''}Pow2Codes")
        self.clipped, self.pooled = clipped, pooled

    def pattern(self, op, acc, s, b, ys, zp):
        y = self._epilogue(op, acc, s, b)
        if self.pooled:
            y = op.MaxPool(y, _allow_other_attributes=True, _outputs=["pooled"])
        if self.clipped:
            y = op.Clip(y, _allow_other_inputs=True, _outputs=["clipped"])
        p = op.Pow2Quant(y, _domain=QCOMPILE_DOMAIN, _allow_other_attributes=True, _outputs=["p"])
        return op.QuantizeLinear(p, ys, zp, _allow_other_attributes=True)

    def check_match(self, context, acc, s, b, ys, zp, yo, p, pooled=None, clipped=None, **_) -> MatchResult:
        result = MatchResult()
        if refusal := self.epilogue_refusal(acc, yo, s, b, pooled):
            return result.fail(refusal)
        if any(len(v.uses()) != 1 or v.is_graph_output() for v in (yo, pooled, clipped, p) if v is not None):
            return result.fail("a value between the int8 layers has other readers")
        thresholds = pow2quant_thresholds(p.producer())
        y_scale, zero = const_array(ys), const_array(zp)
        if not thresholds or y_scale is None or zero is None:
            return result.fail("non-constant parameters")
        if y_scale.size != 1 or float(y_scale.reshape(-1)[0]) != 2.0 ** -(len(thresholds) - 1) or \
                zero.size != 1 or zero.dtype.type not in _CODE_TYPES:
            return result.fail("the QuantizeLinear is not Pow2Quant's grid 2^-(L-1)")
        if self.clipped:
            bounds = []
            for v in clipped.producer().inputs[1:3]:
                a = None if v is None else const_array(v)
                if v is not None and (a is None or a.size != 1):
                    return result.fail("the Clip before the Pow2Quant has non-constant bounds")
                bounds.append(None if a is None else float(a.reshape(-1)[0]))
            lo, hi = (*bounds, None, None)[:2]
            top = max(thresholds)
            if (lo is not None and lo > -top) or (hi is not None and hi < top):
                return result.fail("the Clip before the Pow2Quant cuts inside its thresholds")
        return result

    def rewrite(self, op, acc, s, b, ys, zp, yo, p, pooled=None, **_):
        took = ("Clip", "Pow2Quant") if self.clipped else ("Pow2Quant",)
        return self.requantize(op, acc, s, b, ys, zp, yo, pooled, took,
                               thresholds=pow2quant_thresholds(p.producer()))


class Int8EpilogueThroughQuant(_Int8EpiloguePattern):
    """An int8 layer whose output a float reader takes through a QONNX Quant (MobileNet's pointwise
    conv -> QuantReLU -> float depthwise conv; a classifier left float):

        Quant([Relu](Cast(acc) * s + b), s_q, 0, bits)
     -> DequantizeLinear(Requantize(acc, s, b, s_q, 0, lo, hi), s_q)

    The same float32 values: Quant computes clamp(round(y / s_q)) * s_q; Requantize the same
    codes from the same y (a Relu before an unsigned or signed grid only raises the clamp's low
    end to 0); DequantizeLinear multiplies them by s_q in float32, as Quant does."""

    def __init__(self, relu: bool):
        super().__init__(name=f"Int8EpilogueThrough{'Relu' if relu else ''}Quant")
        self.relu = relu

    def pattern(self, op, acc, s, b, sq, zq, bq):
        y = self._epilogue(op, acc, s, b)
        if self.relu:
            y = op.Relu(y, _outputs=["r"])
        return op.Quant(y, sq, zq, bq, _domain=QONNX_DOMAIN, _allow_other_attributes=True, _outputs=["qo"])

    def check_match(self, context, acc, s, b, sq, zq, bq, yo, qo, r=None, **_) -> MatchResult:
        result = MatchResult()
        if refusal := self.epilogue_refusal(acc, yo, s, b):
            return result.fail(refusal)
        if any(len(v.uses()) != 1 or v.is_graph_output() for v in (yo, r) if v is not None):
            return result.fail("the int8 layer's float output has other readers")
        q_scale, q_zero, q_bits = const_array(sq), const_array(zq), const_array(bq)
        if any(a is None for a in (q_scale, q_zero, q_bits)):
            return result.fail("the Quant has non-constant parameters")
        quant = qo.producer()
        if str_attr(quant, "rounding_mode", "ROUND").upper() not in ("ROUND", "HALF_EVEN"):
            return result.fail("the Quant does not round half to even")
        if q_zero.size != 1 or float(q_zero.reshape(-1)[0]) != 0 or q_bits.size != 1 or not 2 <= float(q_bits.reshape(-1)[0]) <= 8:
            return result.fail("the Quant is not a 2-8 bit grid with zero point 0")
        if not np.all(q_scale > 0):
            return result.fail("the Quant's scale is not positive")
        scale = const_array(s)
        if q_scale.size != 1 and (q_scale.size != scale.size or _channel_axis(q_scale) != _channel_axis(scale)):
            return result.fail(f"the Quant's scale {list(q_scale.shape)} is neither per tensor nor per channel of the layer")
        return result

    def rewrite(self, op, acc, s, b, sq, zq, bq, yo, qo, **_):
        quant = qo.producer()
        bits, signed, narrow = int(const_array(bq).reshape(-1)[0]), int_attr(quant, "signed", 1), int_attr(quant, "narrow", 0)
        qmin, qmax = (int(v) for v in int_range(bits, signed, narrow))
        if self.relu:
            qmin = max(qmin, 0)
        dtype = np.uint8 if qmin >= 0 and qmax <= 255 else np.int8
        q_scale = const_array(sq).astype(np.float32)
        layer = yo.producer().metadata_props[LAYER_KEY]
        ys = op.initializer(ir.tensor(np.ascontiguousarray(q_scale.reshape(-1))), f"{layer}/rq_y_scale")
        zero = op.initializer(ir.tensor(np.zeros(1, dtype)), f"{layer}/rq_zero")
        codes = self.requantize(op, acc, s, b, ys, zero, yo, None, ("Relu", "Quant") if self.relu else ("Quant",),
                                lo=qmin, hi=qmax)
        deq = {} if q_scale.size == 1 else {"axis": _channel_axis(const_array(s))}
        out = op.DequantizeLinear(codes, ys, **deq)  # no zero point: 0 (per axis it would need M of them)
        out.producer().name = f"{layer}/dequantize"
        return out


def int8_requantize_rules() -> pattern.RewriteRuleSet:
    rules = [Int8EpilogueToRequantize.rule(clipped, pooled) for pooled in (True, False) for clipped in (True, False)]
    rules += [Int8EpilogueToRequantize.rule(clipped, False, relu, divided) for relu in (True, False)
              for divided in (True, False) if relu or divided for clipped in (True, False)]
    rules += [Int8EpilogueToPow2Codes.rule(clipped, pooled) for pooled in (True, False) for clipped in (True, False)]
    return pattern.RewriteRuleSet([*rules, *(Int8EpilogueThroughQuant.rule(relu) for relu in (True, False))])


class Int8RequantizePass(RuleSetPass):
    """An int8 layer's epilogue and the next int8 layer's input quantizer become one Requantize."""

    make_rules = staticmethod(int8_requantize_rules)
