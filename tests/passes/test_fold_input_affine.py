"""The model's input scaling folds into the first QuantizePack (FoldInputAffineIntoQuantizePackPass,
exact), and a Sub / Div after the last bit-serial layer into its scale and bias (FoldSub / FoldDiv
of FoldAffineIntoLoweredPass), as Brevitas's BNN-PYNQ MLPs need: the whole compiler on a two-layer
2-bit MLP, then the cases that must not fold, with their reasons."""

from __future__ import annotations

import numpy as np
import onnx
from graphs import GraphBuilder
from helpers import apply_alone, op_types

from qcompile.compiler import compile as compile_model
from qcompile.passes.fold_input_affine import FoldInputAffineIntoQuantizePackPass
from qcompile.verify import verify

QONNX = "qonnx.custom_op.general"


def _act_quant(g: GraphBuilder, x: str, scale: float) -> str:
    ins = [x, g.const(np.float32(scale)), g.const(np.float32(0)), g.const(np.float32(2))]
    return g.op("Quant", ins, domain=QONNX, signed=1, narrow=0, rounding_mode="ROUND")


def _mlp(pre=(("Mul", 2.0), ("Sub", 1.0)), tail=(("Sub", 0.5), ("Div", 3.0)), mid=()) -> onnx.ModelProto:
    """x -> pre ops -> Quant(2 bit) -> MatMul(2-bit W) -> BN -> mid ops -> Quant -> MatMul -> tail ops."""
    g = GraphBuilder(11)
    h = "x"
    for op, c in pre:
        h = g.op(op, [h, g.const(np.float32(c))], name=f"pre_{op}")
    h = _act_quant(g, h, 0.5)
    w1 = g.quant(g.const(g.rng.standard_normal((96, 48)).astype(np.float32)), 0.25, 2, narrow=1)
    h = g.op("MatMul", [h, w1], name="fc1")
    h = g.op("BatchNormalization", [h, *(g.const(v.astype(np.float32)) for v in (
        g.rng.uniform(0.5, 2, 48), g.rng.standard_normal(48), g.rng.standard_normal(48), g.rng.uniform(0.5, 2, 48)))],
        name="bn1")
    for op, c in mid:
        h = g.op(op, [h, g.const(np.float32(c))], name=f"mid_{op}")
    h = _act_quant(g, h, 0.5)
    w2 = g.quant(g.const(g.rng.standard_normal((48, 10)).astype(np.float32)), 0.25, 2, narrow=1)
    h = g.op("MatMul", [h, w2], name="fc2")
    for op, c in tail:
        h = g.op(op, [h, g.const(np.float32(c))], name=f"tail_{op}")
    return g.model({"x": [1, 96]}, [h])


def _attrs(proto: onnx.ModelProto, op_type: str) -> dict:
    node = next(n for n in proto.graph.node if n.op_type == op_type)
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def test_input_scaling_and_the_tail_fold_with_parity():
    ref = _mlp()
    out = compile_model(ref, None, check_parity=True, tune=False, impl=("bitserial",))
    assert out.parity.passed
    assert op_types(out.model) == ["BitSerialMlp"]  # the chain, fused, with its input quantizer
    attrs = _attrs(out.model, "BitSerialMlp")
    assert (attrs["pre_scale"], attrs["pre_bias"]) == (2.0, -1.0)
    # the codes are exact; only the tail's 1/3 folded into scale * D rounds (verify.RTOL)
    assert verify(ref, out.model).passed


def test_a_div_before_the_quantizer_stays_and_says_why():
    ref = _mlp(pre=(("Div", 2.0),))
    _, modified, _ = apply_alone(ref, FoldInputAffineIntoQuantizePackPass())
    assert modified == [False]  # no QuantizePack yet: nothing to fold into
    out = compile_model(ref, None, check_parity=True, tune=False, impl=("bitserial",))
    assert "Div" in op_types(out.model)
    assert "pre_scale" not in _attrs(out.model, "BitSerialMlp")


def test_a_scaled_input_used_twice_does_not_fold():
    g = GraphBuilder(3)
    t = g.op("Mul", ["x", g.const(np.float32(2.0))], name="scale_in")
    q = _act_quant(g, t, 0.5)
    w = g.quant(g.const(g.rng.standard_normal((64, 8)).astype(np.float32)), 0.25, 2, narrow=1)
    y = g.op("MatMul", [q, w], name="fc")
    z = g.op("Add", [y, g.op("ReduceSum", [t], keepdims=1)], name="side")
    ref = g.model({"x": [1, 64]}, [z])
    out = compile_model(ref, None, check_parity=True, tune=False, impl=("bitserial",))
    assert "Mul" in op_types(out.model) and "pre_scale" not in _attrs(out.model, "BitSerialMlp")
    assert out.parity.passed


def test_a_per_feature_mul_does_not_fold():
    g = GraphBuilder(4)
    t = g.op("Mul", ["x", g.const(g.rng.uniform(1, 2, (1, 64)).astype(np.float32))], name="scale_in")
    q = _act_quant(g, t, 0.5)
    w = g.quant(g.const(g.rng.standard_normal((64, 8)).astype(np.float32)), 0.25, 2, narrow=1)
    ref = g.model({"x": [1, 64]}, [g.op("MatMul", [q, w], name="fc")])
    out = compile_model(ref, None, check_parity=True, tune=False, impl=("bitserial",))
    assert "Mul" in op_types(out.model)
    refusals = [r.reason for r in out.report.by_rule("FoldMulIntoQuantizePack")]
    assert refusals == ["the Mul operand is not a finite float32 scalar constant"]


def test_a_sub_between_layers_folds_into_the_thresholds_exactly():
    """A Sub before the next quantizer is not folded into scale and bias (FoldSub refuses it) but
    into the exact integer thresholds, like an Add."""
    ref = _mlp(mid=(("Sub", 0.3), ("Div", 1.5)))
    out = compile_model(ref, None, check_parity=True, tune=False, impl=("bitserial",))
    assert op_types(out.model) == ["BitSerialMlp"]
    reasons = {r.reason for r in out.report.by_rule("FoldSubIntoBitSerialGemm")}
    assert "Sub before a quantizer: left to the exact threshold folding" in reasons
    assert out.parity.passed
