"""Per-input-channel activation scales whose ratios are powers of two go into the integer weights.

Pattern:  Conv(Quant(x, s[1, C, 1, 1], z, b), Quant(W, s_w, 0, b_w))     (not depthwise)
Rewrite:  Conv(Quant(x * 2^-e[c], s0, z, b), Quant(W_q * 2^e[c], s_w, 0, b_w + max e))

with s[c] = s0 * 2^e[c] exactly (qcompile.int8_plan.channel_scale_exponents). Why it is exact: the
Quant rounds x / s[c] + z, and (x * 2^-e) / s0 is the same float32 quotient (a power-of-two scaling
is exact), so the codes q[c] are unchanged; the layer's sum  sum_c s[c] q[c] * W_q[m, c]  is
sum_c s0 q[c] * (W_q[m, c] 2^e[c]), and W_q 2^e = s_w (v_w 2^e) is exactly on the grid of a
(b_w + max e)-bit Quant with the same scale (it holds the integers v_w 2^e, so quantizing it gives
them back). The layer then has a per-tensor input and uniform weights, and lowers as any other
(int8 arithmetic from 5 bits, else bit-serial); the float sums differ from the reference's only in
rounding order. A per-channel scale that cannot be absorbed keeps the reason the layer table
shows (int8_plan.channel_scale_refusal). Runs in the front end, so analysis and the table see the
absorbed layer.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import MatchResult, RewritePass, pattern

from qcompile.analysis import evaluate_quantizer
from qcompile.base.domains import QONNX_DOMAIN
from qcompile.base.ir_readers import const_array, int_attr
from qcompile.int8_plan import absorption
from qcompile.passes.rewrite import NamedPass, ReportingRule


def _per_channel_scale(quant: ir.Node, conv: ir.Node) -> np.ndarray | None:
    """The Quant's scale when it is per input channel [1, C, 1, 1] and the conv is not depthwise."""
    scale = const_array(quant.inputs[1])
    if scale is None or scale.size <= 1 or scale.shape != (1, scale.size, 1, 1):
        return None
    w = const_array(conv.inputs[1].producer().inputs[0]) if conv.inputs[1].producer() is not None else None
    if w is not None and w.ndim == 4 and int_attr(conv, "group", 1) == scale.size and w.shape[1] == 1:
        return None  # depthwise: the scale folds into the output channels' (analysis._depthwise_channel_scale)
    return scale


def _input_channel_of_weights(w_shape: tuple[int, ...], group: int) -> np.ndarray:
    """For W [M, C/group, kh, kw]: the input channel each (m, j) reads, shape [M, C/group, 1, 1]."""
    m, cg = w_shape[0], w_shape[1]
    per_group = m // group
    return ((np.arange(m) // per_group)[:, None] * cg + np.arange(cg)[None, :]).reshape(m, cg, 1, 1)


class AbsorbChannelScalesIntoWeights(ReportingRule):
    def __init__(self):
        super().__init__(name="AbsorbChannelScalesIntoWeights")

    def pattern(self, op, x, s, z, b, w, sw, zw, bw):
        xq = op.Quant(x, s, z, b, _domain=QONNX_DOMAIN, _allow_other_attributes=True, _outputs=["xq"])
        wq = op.Quant(w, sw, zw, bw, _domain=QONNX_DOMAIN, _allow_other_attributes=True, _outputs=["wq"])
        return op.Conv(xq, wq, _allow_other_inputs=True, _allow_other_attributes=True, _outputs=["out"])

    def check_match(self, context, xq, wq, out, **_) -> MatchResult:
        conv = out.producer()
        scale = _per_channel_scale(xq.producer(), conv)
        if scale is None:
            return MatchResult().fail("the activation scale is not per input channel into a non-depthwise Conv")
        plan = absorption(scale, conv)
        if isinstance(plan, str):
            return MatchResult().fail(plan)
        try:
            evaluate_quantizer(wq.producer())
        except ValueError as err:  # e.g. a rounding mode the numpy twin does not know
            return MatchResult().fail(f"the weight quantizer cannot be evaluated: {err}")
        w = const_array(wq.producer().inputs[0])
        group = int_attr(conv, "group", 1)
        if w is None or w.ndim != 4 or group < 1 or w.shape[1] * group != scale.size or w.shape[0] % group:
            return MatchResult().fail("the weights' input channels do not match the activation scale's")
        return MatchResult()

    def rewrite(self, op, x, xq, wq, out, z, b, sw, **_):
        conv, quant, wquant = out.producer(), xq.producer(), wq.producer()
        scale = const_array(quant.inputs[1])
        s0, e, wbits = absorption(scale, conv)
        name = conv.name or "conv"

        def init(array, suffix):
            return op.initializer(ir.tensor(np.array(array)), f"{name}/{suffix}")  # 0-d stays 0-d

        if e.max() > 0:
            x = op.Mul(x, init(np.ldexp(np.float32(1), -e).astype(np.float32).reshape(1, -1, 1, 1), "channel_rescale"))
        attrs = dict(quant.attributes.items())
        xq2 = op.Quant(x, init(np.array(s0, np.float32), "act_scale"), z, b, _domain=QONNX_DOMAIN, **attrs)
        values = evaluate_quantizer(wquant).astype(np.float32)  # s_w * v_w, exact float32 products
        channel = _input_channel_of_weights(values.shape, int_attr(conv, "group", 1))
        absorbed = np.ldexp(values, e[channel]).astype(np.float32)
        wq2 = op.Quant(init(absorbed, "absorbed_weight"), sw, init(np.array(0, np.float32), "weight_zero_point"),
                       init(np.array(wbits, np.float32), "weight_bits"), _domain=QONNX_DOMAIN,
                       **dict(wquant.attributes.items()))
        inputs = [xq2, wq2, *conv.inputs[2:]]
        new = op.Conv(*inputs, **dict(conv.attributes.items()))
        new.producer().name = conv.name
        return new


def absorb_channel_scale_rules() -> pattern.RewriteRuleSet:
    return pattern.RewriteRuleSet([AbsorbChannelScalesIntoWeights.rule()])


class AbsorbChannelScalesPass(NamedPass, ir.passes.InPlacePass):
    """A per-input-channel activation scale with power-of-two ratios moves into the conv's weights."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        return ir.passes.PassResult(model, RewritePass(absorb_channel_scale_rules())(model).modified)
