"""Fold a scalar Mul and Add / Sub in front of a QuantizePack into its pre_scale / pre_bias.

  Mul(x, a) -> [Add(., b) | Sub(., c)] -> QuantizePack   =>   QuantizePack(x, pre_scale=a, pre_bias=b | -c)

QuantizePack computes x * pre_scale + pre_bias as two float32 operations, each rounded, before
it quantizes: exactly what the Mul and Add nodes computed (x - c is x + (-c) in IEEE float), so the
codes are bit for bit the reference's. Brevitas's BNN-PYNQ MLPs scale their input so (2x - 1), two
nodes that cost more than the first layer on a 28x28 image. A Div is not folded (x / c is not
x * (1/c) in float32).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import MatchResult, pattern

from qcompile.base.domains import QCOMPILE_DOMAIN
from qcompile.base.ir_readers import const_array, float_attr
from qcompile.passes.rewrite import ReportingRule, RuleSetPass


def _scalar(value: ir.Value) -> float | None:
    c = const_array(value)
    if c is None or c.size != 1 or c.dtype != np.float32 or not np.isfinite(c).all():
        return None
    return float(c.reshape(()))


class _FoldIntoQuantizePack(ReportingRule):
    """Base: <op>(x, c) -> QuantizePack, the op's output used by the QuantizePack alone."""

    affine_op = ""

    def __init__(self):
        super().__init__(name=f"Fold{self.affine_op}IntoQuantizePack")

    def pattern(self, op, x, c):
        t = getattr(op, self.affine_op)(x, c, _outputs=["t"])
        return op.QuantizePack(t, _domain=QCOMPILE_DOMAIN, _allow_other_attributes=True, _outputs=["y"])

    def applies(self, pack: ir.Node) -> str | None:
        """None if the rule may fold into this QuantizePack, else why not."""
        raise NotImplementedError

    def check_match(self, context, x, c, t, y, **_) -> MatchResult:
        result = MatchResult()
        if len(t.uses()) != 1 or t.is_graph_output():
            return result.fail(f"the {self.affine_op} output has other users")
        if t.producer().inputs[1] is not c or _scalar(c) is None:
            return result.fail(f"the {self.affine_op} operand is not a finite float32 scalar constant")
        reason = self.applies(y.producer())
        return result.fail(reason) if reason else result

    def folded(self, pack: ir.Node, value: float) -> dict[str, float]:
        raise NotImplementedError

    def rewrite(self, op, x, c, t, y, **_):
        old = y.producer()
        attrs = {name: attr for name, attr in old.attributes.items() if name not in ("pre_scale", "pre_bias")}
        pre = self.folded(old, _scalar(c))
        out = op.QuantizePack(x, _domain=QCOMPILE_DOMAIN, **attrs, **pre)
        node = out.producer()
        node.name = old.name
        node.metadata_props.update(old.metadata_props)
        return out


class FoldAddIntoQuantizePack(_FoldIntoQuantizePack):
    affine_op = "Add"

    def applies(self, pack):
        if float_attr(pack, "pre_scale", 1.0) != 1.0 or float_attr(pack, "pre_bias", 0.0) != 0.0:
            return "the QuantizePack already has a pre_scale / pre_bias"
        return None

    def folded(self, pack, value):
        return {"pre_scale": 1.0, "pre_bias": value}


class FoldSubIntoQuantizePack(FoldAddIntoQuantizePack):
    affine_op = "Sub"

    def folded(self, pack, value):
        return {"pre_scale": 1.0, "pre_bias": -value}


class FoldMulIntoQuantizePack(_FoldIntoQuantizePack):
    """Mul before a QuantizePack whose pre-ops are at most an Add: (x * a) + b, the same two steps."""

    affine_op = "Mul"

    def applies(self, pack):
        return "the QuantizePack already has a pre_scale" if float_attr(pack, "pre_scale", 1.0) != 1.0 else None

    def folded(self, pack, value):
        return {"pre_scale": value, "pre_bias": float_attr(pack, "pre_bias", 0.0)}


def input_affine_rules() -> pattern.RewriteRuleSet:
    rules = [cls.rule() for cls in (FoldAddIntoQuantizePack, FoldSubIntoQuantizePack, FoldMulIntoQuantizePack)]
    return pattern.RewriteRuleSet(rules)


class FoldInputAffineIntoQuantizePackPass(RuleSetPass):
    """Scalar Mul / Add / Sub before a QuantizePack fold into its exact pre_scale / pre_bias."""

    make_rules = staticmethod(input_affine_rules)
