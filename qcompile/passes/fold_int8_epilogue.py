"""Fold a per-channel affine that follows an int8 layer's epilogue into its scale and bias.

  y = Cast(ConvInteger(..)) * s + b -> BatchNormalization / Mul / Add (per output channel: k, t)
    => y = Cast(ConvInteger(..)) * (s*k) + (b*k + t)

The same coefficients as FoldAffineIntoLoweredPass (fold_affine: BatchNorm k = gamma/sqrt(var+eps),
computed in float64 once), so the result differs from the reference by float rounding only. Only
the epilogue the int8 lowering wrote matches (its Add carries the layer's metadata).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import MatchResult, pattern

from qcompile.base.ir_readers import const_array
from qcompile.base.metadata import FLOAT_ENCODING, FOLDED_KEY, LAYER_KEY, REF_KEY, ref_entry
from qcompile.passes.fold_affine import FoldAdd, FoldBatchNorm, FoldMul
from qcompile.passes.rewrite import ReportingRule, RuleSetPass

_COEFFICIENTS = {"BatchNormalization": FoldBatchNorm, "Mul": FoldMul, "Add": FoldAdd}


class FoldAffineIntoInt8(ReportingRule):
    def __init__(self, affine_op: str, conv: bool):
        super().__init__(name=f"Fold{affine_op}IntoInt8{'Conv' if conv else 'Gemm'}")
        self.affine_op, self.conv = affine_op, conv
        # fold_affine's rule gives the coefficients; "...Conv" tells it the [1, M, 1, 1] layout
        self.coefficients = _COEFFICIENTS[affine_op]("Int8Conv" if conv else "Int8Gemm", affine_op).coefficients

    @staticmethod
    def _epilogue(op, acc, s, b):
        return op.Add(op.Mul(op.Cast(acc, _allow_other_attributes=True), s), b, _outputs=["yo"])

    def pattern(self, op, acc, s, b, c):  # Mul / Add by c (either operand order: commute)
        return getattr(op, self.affine_op)(self._epilogue(op, acc, s, b), c, _outputs=["out"])

    def check_match(self, context, acc, s, b, yo, out, **_) -> MatchResult:
        result = MatchResult()
        producer = acc.producer()
        want = "ConvInteger" if self.conv else "MatMulInteger"
        if producer is None or producer.op_type != want or LAYER_KEY not in yo.producer().metadata_props:
            return result.fail(f"not the epilogue of an int8 {want} layer")
        if len(yo.uses()) != 1 or yo.is_graph_output():
            return result.fail("the int8 layer's output has other users; folding would change them")
        scale, bias = const_array(s), const_array(b)
        if scale is None or bias is None:
            return result.fail("scale/bias are not constant")
        coeffs = self.coefficients(out.producer(), scale.size)
        return result.fail(coeffs) if isinstance(coeffs, str) else result

    def rewrite(self, op, acc, s, b, yo, out, **_):
        old = yo.producer()
        scale, bias = const_array(s), const_array(b)
        k, t = self.coefficients(out.producer(), scale.size)
        shape = scale.shape
        new_s = (scale.astype(np.float64).reshape(-1) * k).astype(np.float32).reshape(shape)
        new_b = (np.broadcast_to(bias.astype(np.float64).reshape(-1), k.shape) * k + t).astype(np.float32).reshape(shape)
        layer = old.metadata_props[LAYER_KEY]
        y = op.Add(op.Mul(op.Cast(acc, to=ir.DataType.FLOAT),
                          op.initializer(ir.tensor(new_s), f"{layer}/scale_{self.affine_op}")),
                   op.initializer(ir.tensor(new_b), f"{layer}/bias_{self.affine_op}"))
        node = y.producer()
        node.name = old.name
        node.metadata_props.update(old.metadata_props)
        node.metadata_props[REF_KEY] = ref_entry(out.name, FLOAT_ENCODING)
        int_op = acc.producer()  # the table reads the folded ops from the layer's first node
        folded = int_op.metadata_props.get(FOLDED_KEY, "")
        int_op.metadata_props[FOLDED_KEY] = f"{folded},{self.affine_op}".lstrip(",")
        return y


class FoldBatchNormIntoInt8(FoldAffineIntoInt8):
    def pattern(self, op, acc, s, b):
        return op.BatchNormalization(self._epilogue(op, acc, s, b), _allow_other_inputs=True,
                                     _allow_other_attributes=True, _outputs=["out"])


class BatchNormBeforeMaxPool(ReportingRule):
    """MaxPool(epilogue) -> BatchNormalization with every channel's slope k = gamma / sqrt(var + eps)
    > 0 becomes BatchNormalization -> MaxPool, which the BatchNorm rule then folds: for k > 0 each
    step of BatchNorm is non-decreasing in x, and a non-decreasing map commutes with max exactly,
    float rounding included (the ConvNet's Conv -> MaxPool -> BatchNorm blocks)."""

    def __init__(self):
        super().__init__(name="BatchNormBeforeMaxPoolAfterInt8")

    def pattern(self, op, acc, s, b):
        pooled = op.MaxPool(FoldAffineIntoInt8._epilogue(op, acc, s, b), _allow_other_attributes=True,
                            _outputs=["pooled"])
        return op.BatchNormalization(pooled, _allow_other_inputs=True, _allow_other_attributes=True,
                                     _outputs=["out"])

    def check_match(self, context, acc, yo, pooled, out, **_) -> MatchResult:
        result = MatchResult()
        producer = acc.producer()
        if producer is None or producer.op_type != "ConvInteger" or LAYER_KEY not in yo.producer().metadata_props:
            return result.fail("not a MaxPool after an int8 conv's epilogue")
        if len(yo.uses()) != 1 or len(pooled.uses()) != 1 or pooled.is_graph_output():
            return result.fail("the epilogue or the MaxPool has other readers")
        if len(pooled.producer().outputs) != 1:
            return result.fail("the MaxPool also writes indices")
        bn = out.producer()
        gamma, var = const_array(bn.inputs[1]), const_array(bn.inputs[4]) if len(bn.inputs) > 4 else None
        if gamma is None or var is None or not np.all(gamma > 0) or not np.all(var >= 0):
            return result.fail("a BatchNorm channel's slope is not positive (or not constant): max would turn into min")
        return result

    def rewrite(self, op, acc, s, b, yo, pooled, out, **_):
        bn, pool, old = out.producer(), pooled.producer(), yo.producer()
        y = op.Add(op.Mul(op.Cast(acc, to=ir.DataType.FLOAT), s), b)  # the epilogue, rebuilt as it was
        y.producer().name = old.name
        y.producer().metadata_props.update(old.metadata_props)
        moved = op.BatchNormalization(y, *bn.inputs[1:], **{k: v for k, v in bn.attributes.items()})
        return op.MaxPool(moved, **{k: v for k, v in pool.attributes.items()})


def int8_epilogue_rules() -> pattern.RewriteRuleSet:
    rules = [BatchNormBeforeMaxPool.rule()]
    for conv in (True, False):
        rules.append(FoldBatchNormIntoInt8.rule("BatchNormalization", conv))
        rules += [FoldAffineIntoInt8.rule(affine, conv) for affine in ("Mul", "Add")]
    return pattern.RewriteRuleSet(rules, commute=True)


class FoldAffineIntoInt8Pass(RuleSetPass):
    """BatchNorm / Mul / Add after an int8 layer fold into its epilogue's scale and bias (a BatchNorm
    behind a MaxPool first moves in front of it where its slopes are positive)."""

    make_rules = staticmethod(int8_epilogue_rules)
