"""Rewrite 3-8 bit Conv / Gemm / MatMul into onnxruntime's exact integer ops.

Pattern:  Conv(Quant(x, s_a, 0, b_a), Wq)   Wq = Quant / BipolarQuant / Pow2Quant weights
Rewrite:  x_q = Clip(QuantizeLinear(x, s_a, x_zp), lo, hi)       codes v_a + x_zp, int8 or uint8
          (a depthwise conv's per-channel s_a[c]: QuantizeLinear(x / s_a[c], 1), s_a into the output scale)
          D   = ConvInteger(x_q, v_w + w_zp, x_zp, w_zp)        (MatMulInteger for dense layers)
          y   = Cast(D, float) * (s_a * s_w[m]) + bias

Why it is exact: D is the integer dot product of v_a and v_w, summed in int32 by ORT (see
qcompile.int8_plan for the operand types, zero points and the int32 bound); only the final scale
and bias are float, as in every other lowered layer. Runs before weight quantizers are folded:
the weight Quant node carries the integer grid.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import MatchResult, pattern

from qcompile.analysis import conv_attrs
from qcompile.base.metadata import FLOAT_ENCODING, LAYER_KEY, REF_KEY, ref_entry
from qcompile.passes._layer_rule import LayerLoweringRule, output_scale_bias
from qcompile.passes.rewrite import RuleSetPass


def _init(op, array: np.ndarray, name: str) -> ir.Value:
    return op.initializer(ir.tensor(np.ascontiguousarray(array)), name)


class IntLayerToInteger(LayerLoweringRule):
    def __init__(self, op_type: str):
        target = "ConvInteger" if op_type == "Conv" else "MatMulInteger"
        super().__init__(f"Int{op_type}To{target}", op_type, target)

    def check_match(self, context, x, w, out, **bindings) -> MatchResult:
        layer = self.layer(out.producer())
        # a layer that lowers to another op: say why int8 is no option (a float one says why it is float)
        if layer.int8 is None and layer.int8_refusal and layer.target is not None:
            return MatchResult().fail(f"no int8 arithmetic: {layer.int8_refusal}")
        return super().check_match(context, x, w, out, **bindings)

    def rewrite(self, op, x, w, out, **_):
        node = out.producer()
        layer = self.layer(node)
        plan = layer.int8
        name = layer.name
        m = plan.weights.shape[0]
        x_zp = _init(op, np.array(plan.x_zero_point, plan.x_dtype), f"{name}/x_zero_point")
        x_in, x_scale = layer.input.quant_node.inputs[0], plan.act_scale
        if plan.x_pow2:  # the Pow2Quant's own output: a * 2^-(L-1) / 2^-(L-1) = a exactly
            x_in = layer.input.quant_node.outputs[0]
        if plan.x_divisor is not None:  # a depthwise conv's per-channel scale (int8_plan)
            x_in = op.Div(x_in, _init(op, plan.x_divisor, f"{name}/x_divisor"))
            x_scale = np.float32(1.0)
        q = op.QuantizeLinear(x_in, _init(op, np.asarray(x_scale, np.float32), f"{name}/x_scale"), x_zp)
        info = np.iinfo(plan.x_dtype)
        if not plan.x_pow2 and (plan.x_lo > info.min or plan.x_hi < info.max):  # a grid narrower than the type
            q = op.Clip(q, _init(op, np.array(plan.x_lo, plan.x_dtype), f"{name}/x_lo"),
                        _init(op, np.array(plan.x_hi, plan.x_dtype), f"{name}/x_hi"))
        w_zp = _init(op, np.array(plan.w_zero_point, plan.weights.dtype), f"{name}/w_zero_point")
        if self.op_type == "Conv":
            attrs = conv_attrs(node, layer.kernel)
            acc = op.ConvInteger(q, _init(op, plan.weights, f"{name}/w_int"), x_zp, w_zp, **attrs)
            shape = (1, m, 1, 1)
        else:  # B is [K, M]
            acc = op.MatMulInteger(q, _init(op, plan.weights.T, f"{name}/w_int"), x_zp, w_zp)
            shape = (m,)
        acc.producer().name = name
        acc.producer().metadata_props[LAYER_KEY] = name
        scale, bias = output_scale_bias(node, (plan.weight_scale * plan.act_scale).astype(np.float32), m)
        y = op.Mul(op.Cast(acc, to=ir.DataType.FLOAT),
                   _init(op, np.asarray(scale, np.float32).reshape(shape), f"{name}/scale"))
        y = op.Add(y, _init(op, np.asarray(bias, np.float32).reshape(shape), f"{name}/bias"))
        y.producer().name = f"{name}/out"
        y.producer().metadata_props[LAYER_KEY] = name
        y.producer().metadata_props[REF_KEY] = ref_entry(node.outputs[0].name, FLOAT_ENCODING)
        return y


def int8_lowering_rules() -> pattern.RewriteRuleSet:
    return pattern.RewriteRuleSet([IntLayerToInteger.rule(op) for op in ("Conv", "Gemm", "MatMul")])


class LowerInt8LayersPass(RuleSetPass):
    """Layers chosen for int8 arithmetic become ConvInteger / MatMulInteger with a float scale after."""

    make_rules = staticmethod(int8_lowering_rules)
