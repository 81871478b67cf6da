"""Move activation quantizers after shape-only ops: Flatten(Quant(x)) -> Quant(Flatten(x)).

An elementwise quantizer (BipolarQuant, Quant, IntQuant with scalar parameters; qcompile::Pow2Quant)
commutes with Flatten / Reshape, and afterwards the dense layer reading the flattened activations
sees its quantizer directly in front of it, which is the pattern the lowering rules match.

A weight quantizer moves after a Transpose of its constant weight the same way (Brevitas exports a
Linear as MatMul(x, Transpose(Quant(W)))): Transpose(Quant(W, s, z, b)) = Quant(W^T, s^T, z^T, b^T),
exact because the quantizer is elementwise and each parameter, broadcast to W's rank, is transposed
with the same permutation; the multi-bit lowering then reads the integer grid from the Quant node.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import MatchResult, pattern

from qcompile.base.domains import QCOMPILE_DOMAIN, QONNX_DOMAIN
from qcompile.base.ir_readers import const_array, ints_attr
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


def _transposed(array: np.ndarray, perm: list[int]) -> np.ndarray:
    """A quantizer parameter as it broadcasts against the transposed weight (a scalar stays one)."""
    if array.size == 1:
        return array
    return np.transpose(array.reshape((1,) * (len(perm) - array.ndim) + array.shape), perm)


class WeightQuantizerAfterTranspose(ReportingRule):
    """Transpose(Quant(W)) with every Quant input constant -> Quant(W^T) with transposed parameters."""

    def __init__(self, quant_op: str):
        super().__init__(name=f"{quant_op}AfterWeightTranspose")
        self.quant_op = quant_op

    def pattern(self, op, w, scale):
        q = getattr(op, self.quant_op)(w, scale, _domain=QONNX_DOMAIN, _allow_other_inputs=True,
                                       _allow_other_attributes=True, _outputs=["q"])
        return op.Transpose(q, _allow_other_attributes=True, _outputs=["out"])

    def check_match(self, context, w, scale, q, out, **_) -> MatchResult:
        result = MatchResult()
        arrays = [const_array(v) for v in q.producer().inputs]
        if any(a is None for a in arrays):
            return result.fail(f"{self.quant_op} inputs are not all constant (not a weight quantizer)")
        if any(a.ndim > arrays[0].ndim for a in arrays[1:]):
            return result.fail(f"{self.quant_op} parameters have a higher rank than the weight")
        perm = ints_attr(out.producer(), "perm", list(range(arrays[0].ndim))[::-1])
        if sorted(perm) != list(range(arrays[0].ndim)):
            return result.fail(f"Transpose perm {perm} is not a permutation of the weight's {arrays[0].ndim} axes")
        return result

    def rewrite(self, op, w, scale, q, out, **_):
        quant = q.producer()
        weight = const_array(w)
        perm = ints_attr(out.producer(), "perm", list(range(weight.ndim))[::-1])
        inputs = []
        for i, value in enumerate(quant.inputs):
            array = const_array(value)
            moved = np.transpose(weight, perm) if i == 0 else _transposed(array, perm)
            inputs.append(value if moved is array else
                          op.initializer(ir.tensor(np.ascontiguousarray(moved)), f"{value.name}/transposed"))
        return getattr(op, self.quant_op)(*inputs, _domain=QONNX_DOMAIN, **dict(quant.attributes.items()))


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


def weight_transpose_rules() -> pattern.RewriteRuleSet:
    return pattern.RewriteRuleSet(
        [WeightQuantizerAfterTranspose.rule(quant) for quant in ("BipolarQuant", "Quant", "IntQuant")]
    )


class WeightQuantizersAfterTransposePass(RuleSetPass):
    """Transpose(Quant(W)) of constants becomes Quant(W^T), so a layer sees its weight quantizer."""

    make_rules = staticmethod(weight_transpose_rules)
