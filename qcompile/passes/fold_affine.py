"""Fold a per-channel affine that follows an XnorConv / XnorGemm into the op's scale and bias.

  XnorOp(.., s, b) -> BatchNormalization(gamma, beta, mean, var, eps)
        => XnorOp(.., s*k, b*k + (beta - mean*k)),  k = gamma / sqrt(var + eps)
  XnorOp -> Mul(c) => XnorOp(.., s*c, b*c);   XnorOp -> Add(c) => XnorOp(.., s, b + c)
  XnorOp -> Sub(c) => XnorOp(.., s, b - c);   XnorOp -> Div(c) => XnorOp(.., s/c, b/c)

Only a per-output-channel constant folds (scalar, [M], [M,1,1] or [1,M,1,1] for conv outputs);
the result differs from the reference only by float rounding (k is computed in float64 once).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import MatchResult, pattern

from qcompile.base.domains import QCOMPILE_DOMAIN
from qcompile.base.ir_readers import const_array, float_attr, int_attr
from qcompile.base.metadata import FLOAT_ENCODING, FOLDED_KEY, LAYER_KEY, REF_KEY, ref_entry
from qcompile.passes.rewrite import ReportingRule, RuleSetPass

XNOR_OPS = ("XnorConv", "XnorGemm", "BitSerialConv", "BitSerialGemm", "ShiftConv", "ShiftGemm")  # (x, w, scale, bias)


def _per_channel(c: np.ndarray | None, m: int, conv: bool) -> np.ndarray | None:
    """c as a float64 [M] vector if it broadcasts per output channel, else None."""
    if c is None:
        return None
    shape = tuple(c.shape)
    ok = c.size == 1 or (
        c.size == m
        and (shape in ((m,), (1, m)) if not conv else shape in ((m, 1, 1), (1, m, 1, 1)))
    )
    return np.broadcast_to(c.astype(np.float64).reshape(-1), (m,)) if ok else None


class _FoldIntoXnor(ReportingRule):
    """Base: match XnorOp(xp, w, s, b) -> <affine op>; subclasses give the affine's (k, t)."""

    def __init__(self, xnor_op: str, affine_op: str):
        super().__init__(name=f"Fold{affine_op}Into{xnor_op}")
        self.xnor_op, self.affine_op = xnor_op, affine_op

    def _xnor(self, op, xp, w, s, b):
        return getattr(op, self.xnor_op)(
            xp, w, s, b, _domain=QCOMPILE_DOMAIN, _allow_other_attributes=True, _outputs=["xo"]
        )

    def coefficients(self, node: ir.Node, m: int) -> tuple[np.ndarray, np.ndarray] | str:
        """(k, t) with affine(y) = y*k + t per channel, or a reason it does not fold."""
        raise NotImplementedError

    def check_match(self, context, xo, s, b, out, **_) -> MatchResult:
        result = MatchResult()
        if len(xo.uses()) != 1 or xo.is_graph_output():
            return result.fail("the Xnor output has other users; folding would change them")
        scale, bias = const_array(s), const_array(b)
        if scale is None or bias is None:
            return result.fail("scale/bias are not constant")
        coeffs = self.coefficients(out.producer(), scale.size)
        if isinstance(coeffs, str):
            return result.fail(coeffs)
        return result

    def rewrite(self, op, xp, w, s, b, xo, out, **_):
        old = xo.producer()
        scale, bias = const_array(s).astype(np.float64), const_array(b).astype(np.float64)
        k, t = self.coefficients(out.producer(), scale.size)
        new_scale = (scale * k).astype(np.float32)
        new_bias = (bias * k + t).astype(np.float32)
        layer = old.metadata_props.get(LAYER_KEY, old.name or "xnor")
        y = getattr(op, self.xnor_op)(
            xp,
            w,
            op.initializer(ir.tensor(new_scale), f"{layer}/scale_{self.affine_op}"),
            op.initializer(ir.tensor(new_bias), f"{layer}/bias_{self.affine_op}"),
            _domain=QCOMPILE_DOMAIN,
            **{name: attr for name, attr in old.attributes.items()},
        )
        node = y.producer()
        node.name = old.name
        node.metadata_props.update(old.metadata_props)
        folded = old.metadata_props.get(FOLDED_KEY, "")
        node.metadata_props[FOLDED_KEY] = f"{folded},{self.affine_op}".lstrip(",")
        if REF_KEY in old.metadata_props:
            node.metadata_props[REF_KEY] = ref_entry(out.name, FLOAT_ENCODING)
        return y


class FoldBatchNorm(_FoldIntoXnor):
    def pattern(self, op, xp, w, s, b, gamma, beta, mean, var):
        return op.BatchNormalization(
            self._xnor(op, xp, w, s, b), gamma, beta, mean, var,
            _allow_other_attributes=True, _outputs=["out"],
        )

    def coefficients(self, node, m):
        if int_attr(node, "training_mode", 0):
            return "BatchNormalization is in training mode"
        gamma, beta, mean, var = (const_array(v) for v in node.inputs[1:5])
        if any(a is None or a.size != m for a in (gamma, beta, mean, var)):
            return "BatchNormalization parameters are not constant [M] vectors"
        eps = float_attr(node, "epsilon", 1e-5)
        k = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + np.float64(np.float32(eps)))
        return k, beta.astype(np.float64) - mean.astype(np.float64) * k


class FoldMul(_FoldIntoXnor):
    def pattern(self, op, xp, w, s, b, c):
        return op.Mul(self._xnor(op, xp, w, s, b), c, _outputs=["out"])

    def coefficients(self, node, m):
        k = _per_channel(const_array(node.inputs[1]), m, self.xnor_op.endswith("Conv"))
        return "Mul operand is not a per-channel constant" if k is None else (k, np.zeros(m))


class FoldAdd(_FoldIntoXnor):
    def pattern(self, op, xp, w, s, b, c):
        return op.Add(self._xnor(op, xp, w, s, b), c, _outputs=["out"])

    def coefficients(self, node, m):
        t = _per_channel(const_array(node.inputs[1]), m, self.xnor_op.endswith("Conv"))
        return "Add operand is not a per-channel constant" if t is None else (np.ones(m), t)


# Ops between a lowered op and the next layer's quantizer that MultibitThresholdsPass folds exactly.
_CODE_CHAIN_OPS = {"Mul", "Add", "Sub", "Div", "Relu", "Clip", "MaxPool", "BatchNormalization"}
_QUANTIZERS = {"Quant", "QuantizePack", "BipolarQuant", "BinarizePack"}


def _feeds_a_quantizer(value: ir.Value) -> bool:
    """Whether value runs through single-use elementwise ops into a quantizer. Sub and Div fold
    only into a float tail (the classifier's normalisation): before a quantizer the threshold
    pass folds them exactly, which these float64 folds would not be."""
    for _ in range(64):
        uses = value.uses()
        if len(uses) != 1:
            return False
        node = uses[0].node
        if node.op_type in _QUANTIZERS:
            return True
        if node.op_type not in _CODE_CHAIN_OPS or not node.outputs:
            return False
        value = node.outputs[0]
    return False


class FoldSub(_FoldIntoXnor):
    """y - c, as y + (-c) (the same float32 result)."""

    def pattern(self, op, xp, w, s, b, c):
        return op.Sub(self._xnor(op, xp, w, s, b), c, _outputs=["out"])

    def coefficients(self, node, m):
        if _feeds_a_quantizer(node.outputs[0]):
            return "Sub before a quantizer: left to the exact threshold folding"
        t = _per_channel(const_array(node.inputs[1]), m, self.xnor_op.endswith("Conv"))
        return "Sub operand is not a per-channel constant" if t is None else (np.ones(m), -t)


class FoldDiv(_FoldIntoXnor):
    """y / c, as y * (1/c) (1/c in float64: the result differs by float rounding, as for BatchNorm)."""

    def pattern(self, op, xp, w, s, b, c):
        return op.Div(self._xnor(op, xp, w, s, b), c, _outputs=["out"])

    def coefficients(self, node, m):
        if _feeds_a_quantizer(node.outputs[0]):
            return "Div before a quantizer: left to the exact threshold folding"
        c = _per_channel(const_array(node.inputs[1]), m, self.xnor_op.endswith("Conv"))
        if c is None or not np.all(np.isfinite(c)) or np.any(c == 0):
            return "Div operand is not a finite, non-zero per-channel constant"
        return 1.0 / c, np.zeros(m)


def affine_folding_rules() -> pattern.RewriteRuleSet:
    rules = []
    for xnor_op in XNOR_OPS:
        for cls, affine in ((FoldBatchNorm, "BatchNormalization"), (FoldMul, "Mul"), (FoldAdd, "Add"),
                            (FoldSub, "Sub"), (FoldDiv, "Div")):
            rules.append(cls.rule(xnor_op, affine))
    return pattern.RewriteRuleSet(rules, commute=True)


class FoldAffineIntoLoweredPass(RuleSetPass):
    """BatchNorm / Mul / Add / Sub / Div after a lowered op fold into its per-channel scale and bias."""

    make_rules = staticmethod(affine_folding_rules)
