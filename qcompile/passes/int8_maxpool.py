"""An int8 layer behind MaxPool(Quant(x)) quantizes the pooled x itself: the float quantizer goes.

Pattern:  codes = [Clip](QuantizeLinear(MaxPool(Quant(x, s, 0, b)), s, zp))   (an int8 layer's input)
Rewrite:  codes = [Clip](QuantizeLinear(MaxPool(x), s, zp))                  (float MaxPool, then codes)

Why it is exact: Quant(x) = s * q(x) with q = clip(round(x / s)) non-decreasing, and multiplying
by s > 0 keeps order, so MaxPool(Quant(x)) = s * q(max x); QuantizeLinear of s * q gives q back
(s * q / s is within an ulp of the integer q), and QuantizeLinear(max x) is q(max x) (+ zp) as
well, being the same non-decreasing rounding of x / s. MaxPool's -inf border never wins.

Why the pool runs on floats, before the codes: onnxruntime's float MaxPool is vectorized (MLAS) and
its int8 one is not (a 2x2 pool of 64x28x28 codes: ~240 us vs ~11 us in float on the CNV models),
and QuantizeLinear / Clip then run on the pooled, 4x smaller tensor. The float quantizer, often the
costliest node between two layers, has no reader left and is removed.
"""

from __future__ import annotations

import numpy as np
from onnxscript.rewriter import MatchResult, pattern

from qcompile.base.domains import QONNX_DOMAIN
from qcompile.base.ir_readers import const_array, int_attr, str_attr
from qcompile.ops.qonnx import int_range
from qcompile.passes.rewrite import ReportingRule, RuleSetPass


def _scalar(value) -> float | None:
    arr = const_array(value)
    return float(arr.reshape(-1)[0]) if arr is not None and arr.size == 1 else None


class Int8CodesThroughMaxPool(ReportingRule):
    """pooled=False: the same without the MaxPool, QuantizeLinear(Quant(x)) -> QuantizeLinear(x)
    (a quantizer hoisted behind a Flatten in front of the int8 layer's own: Brevitas CNV's last conv
    -> Flatten -> first dense layer)."""

    def __init__(self, clipped: bool, pooled: bool = True):
        super().__init__(name=f"Int8Codes{'ThroughMaxPool' if pooled else 'OfQuant'}{'Clipped' if clipped else ''}")
        self.clipped, self.pooled = clipped, pooled

    def pattern(self, op, x, s, z, b, s2, zp, lo, hi):
        pooled = op.Quant(x, s, z, b, _domain=QONNX_DOMAIN, _allow_other_attributes=True, _outputs=["q"])
        if self.pooled:
            pooled = op.MaxPool(pooled, _allow_other_attributes=True, _outputs=["pooled"])
        codes = op.QuantizeLinear(pooled, s2, zp, _allow_other_attributes=True)
        return op.Clip(codes, lo, hi) if self.clipped else codes

    def check_match(self, context, q, s, z, b, s2, zp, pooled=None, lo=None, hi=None, **_) -> MatchResult:
        result = MatchResult()
        quant, scale, bits = q.producer(), _scalar(s), _scalar(b)
        if scale is None or _scalar(s2) != scale or _scalar(z) != 0 or bits is None:
            return result.fail("the quantizer before the MaxPool is not the int8 layer's grid (scale, zero point 0)")
        if str_attr(quant, "rounding_mode", "ROUND") != "ROUND":
            return result.fail("the quantizer before the MaxPool does not round to nearest")
        if self.pooled and (len(pooled.uses()) != 1 or pooled.is_graph_output()):
            return result.fail("the MaxPool has other readers")
        if not self.pooled and (len(q.uses()) != 1 or q.is_graph_output()):
            return result.fail("the Quant has other readers")
        qmin, qmax = (int(v) for v in int_range(bits, int_attr(quant, "signed", 1), int_attr(quant, "narrow", 0)))
        zero = int(np.asarray(const_array(zp)).reshape(-1)[0])
        if self.clipped:
            span = (int(np.asarray(const_array(lo)).reshape(-1)[0]), int(np.asarray(const_array(hi)).reshape(-1)[0]))
        else:
            info = np.iinfo(const_array(zp).dtype)
            span = (int(info.min), int(info.max))
        if span != (qmin + zero, qmax + zero):
            return result.fail(f"the codes' range {span} is not the quantizer's [{qmin}, {qmax}] + {zero}")
        return result

    def rewrite(self, op, x, s2, zp, pooled=None, lo=None, hi=None, **_):
        if self.pooled:
            x = op.MaxPool(x, **{name: attr for name, attr in pooled.producer().attributes.items()})
        codes = op.QuantizeLinear(x, s2, zp)
        return op.Clip(codes, lo, hi) if self.clipped else codes


class CodesBeforeReshape(ReportingRule):
    """[Clip](QuantizeLinear(Reshape|Flatten(y))) -> Reshape|Flatten([Clip](QuantizeLinear(y))): a
    per-tensor quantizer is elementwise, so it commutes with a reshape exactly; the codes then sit
    right behind the layer before (Int8RequantizePass fuses them into its epilogue)."""

    def __init__(self, shape_op: str, clipped: bool):
        super().__init__(name=f"Int8CodesBefore{shape_op}{'Clipped' if clipped else ''}")
        self.shape_op, self.clipped = shape_op, clipped

    def pattern(self, op, y, shape, ys, zp, lo, hi):
        if self.shape_op == "Reshape":
            r = op.Reshape(y, shape, _allow_other_attributes=True, _outputs=["r"])
        else:
            r = op.Flatten(y, _allow_other_attributes=True, _outputs=["r"])
        codes = op.QuantizeLinear(r, ys, zp, _allow_other_attributes=True, _outputs=["codes"])
        return op.Clip(codes, lo, hi) if self.clipped else codes

    def check_match(self, context, y, r, ys, zp, codes, lo=None, hi=None, **_) -> MatchResult:
        result = MatchResult()
        if len(r.uses()) != 1 or r.is_graph_output():
            return result.fail("the reshaped value has other readers")
        scale, zero = const_array(ys), const_array(zp)
        if scale is None or zero is None or scale.size != 1 or zero.size != 1:
            return result.fail("the QuantizeLinear is not per tensor")
        if not self.clipped and any(use.node.op_type == "Clip" for use in codes.uses()):
            return result.fail("a Clip follows: the clipped rule takes it")
        producer = y.producer()
        if producer is None or producer.op_type in ("QuantizeLinear", "Clip"):
            return result.fail("nothing to gain: codes already")
        return result

    def rewrite(self, op, y, r, ys, zp, shape=None, lo=None, hi=None, **_):
        codes = op.QuantizeLinear(y, ys, zp)
        if self.clipped:
            codes = op.Clip(codes, lo, hi)
        attrs = {name: attr for name, attr in r.producer().attributes.items()}
        return op.Reshape(codes, shape, **attrs) if self.shape_op == "Reshape" else op.Flatten(codes, **attrs)


def int8_maxpool_rules() -> pattern.RewriteRuleSet:
    rules = [Int8CodesThroughMaxPool.rule(clipped, pooled) for pooled in (True, False) for clipped in (True, False)]
    rules += [CodesBeforeReshape.rule(shape_op, clipped) for shape_op in ("Reshape", "Flatten") for clipped in (True, False)]
    return pattern.RewriteRuleSet(rules)


class Int8CodesThroughMaxPoolPass(RuleSetPass):
    """An int8 layer behind MaxPool(Quant(x)) max-pools x in float and quantizes the pooled values."""

    make_rules = staticmethod(int8_maxpool_rules)
