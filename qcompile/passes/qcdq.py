"""Read QCDQ exports: QuantizeLinear -> [Clip] -> DequantizeLinear becomes one QONNX Quant.

    DequantizeLinear(Clip(QuantizeLinear(x, s, z), lo, hi), s, z)  ==  Quant(x, s, z, bits, signed, narrow)

with (bits, signed, narrow) read off the clip range ([lo, hi] must be exactly a b-bit range, narrow
or not; without a Clip the range is that of the int8/uint8 zero point). Both round x / s half to
even and saturate to the range, so the two agree exactly when z is even (rounding half to even is
not shift-invariant by an odd z); an odd zero point is refused. Per-channel scales (attribute axis)
become a scale shaped to broadcast along that axis.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import MatchResult, pattern

from qcompile.base.domains import QONNX_DOMAIN
from qcompile.base.ir_readers import const_array, int_attr
from qcompile.passes.rewrite import ReportingRule, RuleSetPass


def grid_of(lo: int, hi: int) -> tuple[int, int, int] | None:
    """(bits, signed, narrow) whose integer range is exactly [lo, hi], else None."""
    for bits in range(1, 17):
        if lo < 0 or (lo == 0 and hi < 0):
            full, narrow = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1), (-(1 << (bits - 1)) + 1, (1 << (bits - 1)) - 1)
            if (lo, hi) == full:
                return bits, 1, 0
            if bits >= 2 and (lo, hi) == narrow:
                return bits, 1, 1
        else:
            if (lo, hi) == (0, (1 << bits) - 1):
                return bits, 0, 0
            if bits >= 2 and (lo, hi) == (0, (1 << bits) - 2):
                return bits, 0, 1
    return None


def _broadcast_shape(scale: np.ndarray, axis: int, rank: int | None) -> np.ndarray | str:
    if scale.size == 1:
        return scale.reshape(()).astype(np.float32)
    if rank is None:
        return "a per-channel scale on a tensor of unknown rank"
    shape = [1] * rank
    shape[axis % rank] = scale.size
    return scale.astype(np.float32).reshape(shape)


class QcdqToQuant(ReportingRule):
    def __init__(self, with_clip: bool):
        super().__init__(name="QCDQToQuant" if with_clip else "QDQToQuant")
        self.with_clip = with_clip

    def pattern(self, op, x, s, z, s2, z2, lo, hi):
        q = op.QuantizeLinear(x, s, z, _allow_other_attributes=True, _outputs=["q"])
        if self.with_clip:
            q = op.Clip(q, lo, hi)
        return op.DequantizeLinear(q, s2, z2, _allow_other_attributes=True, _outputs=["out"])

    def _params(self, x, s, z, s2, z2, lo, hi, q, out):
        """(scale, zero point, bits, signed, narrow) or a reason."""
        arrays = [const_array(v) for v in (s, z, s2, z2)]
        if any(a is None for a in arrays):
            return "scale / zero point are not constant"
        scale, zp, scale2, zp2 = arrays
        if not (np.array_equal(scale, scale2) and np.array_equal(zp, zp2)):
            return "QuantizeLinear and DequantizeLinear use different scales or zero points"
        if zp.size > 1 and not np.all(zp == zp.reshape(-1)[0]):
            return "per-channel zero points are not supported"
        z0 = int(zp.reshape(-1)[0])
        if z0 % 2:
            return f"odd zero point {z0}: QuantizeLinear and Quant round ties differently"
        if self.with_clip:
            lo_v, hi_v = const_array(lo), const_array(hi)
            if lo_v is None or hi_v is None:
                return "Clip bounds are not constant"
            lo_i, hi_i = int(lo_v), int(hi_v)
        else:
            lo_i, hi_i = (-128, 127) if zp.dtype == np.int8 else (0, 255)
        grid = grid_of(lo_i - 0, hi_i - 0)
        if grid is None:
            return f"clip range [{lo_i}, {hi_i}] is not a b-bit integer range"
        axis = int_attr(q.producer(), "axis", 1)
        rank = len(x.shape) if x.shape is not None else (const_array(x).ndim if const_array(x) is not None else None)
        shaped = _broadcast_shape(scale, axis, rank)
        if isinstance(shaped, str):
            return shaped
        return shaped, np.float32(z0), grid

    def check_match(self, context, x, s, z, s2, z2, q, out, lo=None, hi=None, **_) -> MatchResult:
        result = MatchResult()
        params = self._params(x, s, z, s2, z2, lo, hi, q, out)
        return result.fail(params) if isinstance(params, str) else result

    def rewrite(self, op, x, s, z, s2, z2, q, out, lo=None, hi=None, **_):
        scale, zp, (bits, signed, narrow) = self._params(x, s, z, s2, z2, lo, hi, q, out)
        name = out.name or "qcdq"
        return op.Quant(
            x,
            op.initializer(ir.tensor(scale), f"{name}/scale"),
            op.initializer(ir.tensor(zp), f"{name}/zeropt"),
            op.initializer(ir.tensor(np.float32(bits)), f"{name}/bitwidth"),
            _domain=QONNX_DOMAIN, signed=signed, narrow=narrow, rounding_mode="ROUND",
        )


def qcdq_rules() -> pattern.RewriteRuleSet:
    return pattern.RewriteRuleSet([QcdqToQuant.rule(True), QcdqToQuant.rule(False)])


class QcdqToQuantPass(RuleSetPass):
    """QuantizeLinear -> [Clip] -> DequantizeLinear chains become QONNX Quant nodes."""

    make_rules = staticmethod(qcdq_rules)
