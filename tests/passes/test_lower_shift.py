"""LowerShiftLayersPass alone: Pow2Quant activations x power-of-two weights -> ShiftConv; structure,
parity, and the case it must not fire (Pow2Quant thresholds out of order), with its reason."""

from __future__ import annotations

from graphs import GraphBuilder
from helpers import apply_alone, op_types

from qcompile.passes.lower_shift import LowerShiftLayersPass
from qcompile.verify import verify


def _conv(thresholds):
    g = GraphBuilder(8)
    y = g.op("Conv", [g.pow2("x", thresholds), g.pow2_weight((6, 4, 3, 3))], name="conv", kernel_shape=[3, 3],
             pads=[1, 1, 1, 1])
    return g.model({"x": [2, 4, 6, 6]}, [y])


def test_pow2_conv_becomes_shift_conv_with_parity():
    ref = _conv([0.75, 1.5])
    lowered, modified, _ = apply_alone(ref, LowerShiftLayersPass())
    assert modified == [True] and op_types(lowered).count("ShiftConv") == 1 and "Conv" not in op_types(lowered)
    # integer shifts and adds are exact; only the output scale is rounded to float32 (verify.RTOL)
    assert verify(ref, lowered).passed


def test_unordered_thresholds_must_not_fire_and_say_why():
    lowered, modified, run = apply_alone(_conv([1.5, 0.75]), LowerShiftLayersPass())
    assert modified == [False] and "ShiftConv" not in op_types(lowered)
    (refusal,) = run.report.by_rule("Pow2ConvToShift")
    assert refusal.node == "conv" and refusal.layer_reason
    assert refusal.reason.startswith("Pow2Quant thresholds [1.5, 0.75] are not 1..")
    assert op_types(lowered) == op_types(_conv([1.5, 0.75]))  # untouched
