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
