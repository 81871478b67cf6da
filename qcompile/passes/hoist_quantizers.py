"""Move activation quantizers after shape-only ops: Flatten(Quant(x)) -> Quant(Flatten(x)).

An elementwise quantizer (BipolarQuant, Quant, IntQuant with scalar parameters; qcompile::Pow2Quant)
commutes with Flatten / Reshape, and afterwards the dense layer reading the flattened activations
sees its quantizer directly in front of it, which is the pattern the lowering rules match.
"""

from __future__ import annotations

from onnxscript.rewriter import MatchResult, pattern

from qcompile.base.domains import QCOMPILE_DOMAIN, QONNX_DOMAIN
from qcompile.base.ir_readers import const_array
from qcompile.passes.rewrite import ReportingRule, RuleSetPass


class QuantizerAfterShapeOp(ReportingRule):
    def __init__(self, quant_op: str, shape_op: str):
        super().__init__(name=f"{quant_op}After{shape_op}")
        self.quant_op, self.shape_op = quant_op, shape_op

    def pattern(self, op, x, scale):
        q = getattr(op, self.quant_op)(x, scale, _domain=QONNX_DOMAIN, _allow_other_inputs=True,
                                       _allow_other_attributes=True, _outputs=["q"])
        return getattr(op, self.shape_op)(q, _allow_other_inputs=True, _allow_other_attributes=True, _outputs=["out"])

    def check_match(self, context, x, scale, q, out, **_) -> MatchResult:
        result = MatchResult()
        params = [const_array(v) for v in q.producer().inputs[1:]]
        if any(p is None or p.size != 1 for p in params):
            return result.fail(f"{self.quant_op} parameters are not scalar constants")
        return result

    def rewrite(self, op, x, scale, q, out, **_):
        node, quant = out.producer(), q.producer()
        reshaped = getattr(op, self.shape_op)(x, *node.inputs[1:], **dict(node.attributes.items()))
        return getattr(op, self.quant_op)(reshaped, *quant.inputs[1:], _domain=QONNX_DOMAIN,
                                          **dict(quant.attributes.items()))


class Pow2QuantAfterShapeOp(ReportingRule):
    """Flatten(Pow2Quant(x)) -> Pow2Quant(Flatten(x)); Pow2Quant has no parameter inputs."""

    def __init__(self, shape_op: str):
        super().__init__(name=f"Pow2QuantAfter{shape_op}")
        self.shape_op = shape_op

    def pattern(self, op, x):
        q = op.Pow2Quant(x, _domain=QCOMPILE_DOMAIN, _allow_other_attributes=True, _outputs=["q"])
        return getattr(op, self.shape_op)(q, _allow_other_inputs=True, _allow_other_attributes=True, _outputs=["out"])

    def rewrite(self, op, x, q, out, **_):
        node, quant = out.producer(), q.producer()
        reshaped = getattr(op, self.shape_op)(x, *node.inputs[1:], **dict(node.attributes.items()))
        return op.Pow2Quant(reshaped, _domain=QCOMPILE_DOMAIN, **dict(quant.attributes.items()))


def hoist_rules() -> pattern.RewriteRuleSet:
    return pattern.RewriteRuleSet(
        [
            QuantizerAfterShapeOp.rule(quant, shape)
            for quant in ("BipolarQuant", "Quant", "IntQuant")
            for shape in ("Flatten", "Reshape")
        ]
        + [Pow2QuantAfterShapeOp.rule(shape) for shape in ("Flatten", "Reshape")]
    )


class HoistQuantizersPass(RuleSetPass):
    """Activation quantizers move after Flatten / Reshape."""

    make_rules = staticmethod(hoist_rules)
