"""Move activation quantizers after shape-only ops: Flatten(Quant(x)) -> Quant(Flatten(x)).

An elementwise quantizer (BipolarQuant, Quant, IntQuant) with scalar parameters commutes with Flatten / Reshape, and afterwards the
dense layer reading the flattened activations sees a BipolarQuant directly in front of it, which
is the pattern the binary lowering rules match.
"""

from __future__ import annotations

from onnxscript.rewriter import pattern
from onnxscript.rewriter._basics import MatchResult

from qcompile.passes._consts import QONNX_DOMAIN, const_array


class QuantizerAfterShapeOp(pattern.RewriteRuleClassBase):
    def __init__(self, quant_op: str, shape_op: str):
        super().__init__(name=f"{quant_op}After{shape_op}")
        self.quant_op, self.shape_op = quant_op, shape_op

    def pattern(self, op, x, scale):
        q = getattr(op, self.quant_op)(x, scale, _domain=QONNX_DOMAIN, _allow_other_inputs=True,
                                       _allow_other_attributes=True, _outputs=["q"])
        return getattr(op, self.shape_op)(q, _allow_other_inputs=True, _allow_other_attributes=True, _outputs=["out"])

    def check(self, context, x, scale, q, out, **_) -> MatchResult:
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


def hoist_rules() -> pattern.RewriteRuleSet:
    return pattern.RewriteRuleSet(
        [
            QuantizerAfterShapeOp.rule(quant, shape)
            for quant in ("BipolarQuant", "Quant", "IntQuant")
            for shape in ("Flatten", "Reshape")
        ]
    )
