"""LowerMultibitLayersPass alone (before the weight quantizers are folded, as in the pipeline):
Quant activations x Quant weights -> QuantizePack + BitSerialConv; structure, parity, and the case
it must not fire (an activation Quant whose zero point is not an integer), with its reason."""

from __future__ import annotations

import numpy as np
from graphs import GraphBuilder
from helpers import apply_alone, op_types

from qcompile.passes.lower_multibit import LowerMultibitLayersPass
from qcompile.verify import verify


def _conv(act_zp: float):
    g = GraphBuilder(7)
    ins = ["x", g.const(np.float32(0.3), "s"), g.const(np.float32(act_zp), "z"), g.const(np.float32(2), "b")]
    xq = g.op("Quant", ins, domain="qonnx.custom_op.general", signed=0, narrow=0, rounding_mode="ROUND")
    w = g.quant(g.const(g.rng.standard_normal((6, 5, 3, 3)).astype(np.float32)), 0.25, 2, narrow=1)
    y = g.op("Conv", [xq, w], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    return g.model({"x": [2, 5, 6, 6]}, [y])


def test_two_bit_conv_becomes_bit_serial_with_parity():
    ref = _conv(0.0)
    lowered, modified, run = apply_alone(ref, LowerMultibitLayersPass())
    assert modified == [True]
    assert op_types(lowered)[-2:] == ["QuantizePack", "BitSerialConv"] and "Conv" not in op_types(lowered)
    # the integer dot product is exact; only scale * D is rounded to float32 (verify.RTOL)
    assert verify(ref, lowered).passed
    assert run.analyses.computed == 1


def test_fractional_zero_point_must_not_fire_and_says_why():
    lowered, modified, run = apply_alone(_conv(0.5), LowerMultibitLayersPass())
    assert modified == [False] and "BitSerialConv" not in op_types(lowered)
    (refusal,) = run.report.by_rule("MultiBitConvToBitSerial")
    assert refusal.node == "conv" and refusal.layer_reason
    assert refusal.reason == "activation Quant zero point is not an integer scalar constant"


def _per_channel_act_conv(group: int):
    """Quant(x, per-channel scale [1, 4, 1, 1]) -> Conv(group): MobileNet's QuantReLU -> depthwise."""
    g = GraphBuilder(8)
    scale = g.rng.uniform(0.05, 0.4, (1, 4, 1, 1)).astype(np.float32)
    ins = ["x", g.const(scale, "s"), g.const(np.float32(0), "z"), g.const(np.float32(4), "b")]
    xq = g.op("Quant", ins, domain="qonnx.custom_op.general", signed=0, narrow=0, rounding_mode="ROUND")
    w = g.quant(g.const(g.rng.standard_normal((8, 4 // group, 3, 3)).astype(np.float32)), 0.25, 4, narrow=1)
    y = g.op("Conv", [xq, w], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=group)
    return g.model({"x": [2, 4, 6, 6]}, [y])


def test_per_channel_activation_scale_folds_into_a_depthwise_conv_with_parity():
    ref = _per_channel_act_conv(group=4)  # depth multiplier 2: output m reads channel m // 2
    lowered, modified, _ = apply_alone(ref, LowerMultibitLayersPass())
    assert modified == [True]
    assert op_types(lowered)[-3:] == ["Div", "QuantizePack", "BitSerialConv"]
    # codes from the Quant's own x / s[c]; the integer dot product is exact; scale * D rounds (verify.RTOL)
    assert verify(ref, lowered).passed


def test_per_channel_activation_scale_into_a_dense_conv_must_not_fire_and_says_why():
    lowered, modified, run = apply_alone(_per_channel_act_conv(group=1), LowerMultibitLayersPass())
    assert modified == [False] and "BitSerialConv" not in op_types(lowered)
    (refusal,) = run.report.by_rule("MultiBitConvToBitSerial")
    assert "group=1" in refusal.reason and "depthwise" in refusal.reason
