"""Move activation quantizers after shape-only ops: Flatten(BipolarQuant(x)) -> BipolarQuant(Flatten(x)).

An elementwise quantizer with a scalar scale commutes with Flatten / Reshape, and afterwards the
dense layer reading the flattened activations sees a BipolarQuant directly in front of it, which
is the pattern the binary lowering rules match.
"""

from __future__ import annotations

import onnx_ir as ir
from onnxscript.rewriter import pattern
from onnxscript.rewriter._basics import MatchResult

from qcompile.passes._consts import QONNX_DOMAIN, const_array


class QuantizerAfterShapeOp(pattern.RewriteRuleClassBase):
    def __init__(self, shape_op: str):
        super().__init__(name=f"BipolarQuantAfter{shape_op}")
        self.shape_op = shape_op

    def pattern(self, op, x, scale):
        q = op.BipolarQuant(x, scale, _domain=QONNX_DOMAIN, _outputs=["q"])
        return getattr(op, self.shape_op)(q, _allow_other_inputs=True, _allow_other_attributes=True, _outputs=["out"])

    def check(self, context, x, scale, q, out, **_) -> MatchResult:
        result = MatchResult()
        s = const_array(scale)
        if s is None or s.size != 1:
            return result.fail("BipolarQuant scale is not a scalar constant")
        return result

    def rewrite(self, op, x, scale, q, out, **_):
        node = out.producer()
        reshaped = getattr(op, self.shape_op)(x, *node.inputs[1:], **dict(node.attributes.items()))
        return op.BipolarQuant(reshaped, scale, _domain=QONNX_DOMAIN)


def hoist_rules() -> pattern.RewriteRuleSet:
    return pattern.RewriteRuleSet([QuantizerAfterShapeOp.rule("Flatten"), QuantizerAfterShapeOp.rule("Reshape")])
