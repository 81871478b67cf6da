"""A depthwise int8 layer between int8 layers (MobileNet's pointwise -> ReLU -> depthwise -> ReLU ->
pointwise) compiles to qcompile::DepthwiseConvRequantize with nothing float between the layers:
Int8RequantizePass takes the Relu and the depthwise conv's per-channel Div, DepthwiseIntegerPass
the ConvInteger and its Requantize. The compiled outputs equal the pure-Python evaluator's run of the
same graph bit for bit, and the reference's within the float epilogue's rounding (parity)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from graphs import GraphBuilder
from helpers import equals_the_evaluator, random_inputs

from qcompile import runtime
from qcompile.compiler import compile as compile_model
from qcompile.passes.depthwise_integer import DepthwiseIntegerPass, is_depthwise_conv_integer


def _quant(g, x, scale, bits=4, signed=0):
    ins = [x, g.const(scale, "s"), g.const(np.float32(0.0), "z"), g.const(np.float32(bits), "b")]
    return g.op("Quant", ins, domain="qonnx.custom_op.general", signed=signed, narrow=0, rounding_mode="ROUND")


def _mobilenet_block(per_channel: bool, stride: int = 1, signed_dw_input: int = 0, last_dw: bool = False):
    """Quant -> pw Conv -> BN -> Relu -> Quant ([1, C, 1, 1] or per-tensor scale) -> dw Conv (3x3) ->
    BN -> Relu -> Quant -> pw Conv; last_dw: the depthwise conv's output is the graph's."""
    g = GraphBuilder(21)
    c = 6
    w1 = g.quant(g.const(g.rng.standard_normal((c, 5, 1, 1)).astype(np.float32)), 0.2, 4)
    y = g.op("Relu", [g.bn(g.op("Conv", [_quant(g, "x", np.float32(0.3)), w1], name="pw1", kernel_shape=[1, 1]), c)])
    scale = g.rng.uniform(0.1, 0.4, (1, c, 1, 1)).astype(np.float32) if per_channel else np.float32(0.3)
    q = _quant(g, y, scale, signed=signed_dw_input)
    w2 = g.quant(g.const(g.rng.standard_normal((c, 1, 3, 3)).astype(np.float32)), 0.2, 4)
    z = g.op("Conv", [q, w2], name="dw", kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[stride, stride], group=c)
    if last_dw:
        return g.model({"x": [2, 5, 9, 9]}, [z])
    z = g.op("Relu", [g.bn(z, c)])
    w3 = g.quant(g.const(g.rng.standard_normal((4, c, 1, 1)).astype(np.float32)), 0.2, 4)
    out = g.op("Conv", [_quant(g, z, np.float32(0.5)), w3], name="pw2", kernel_shape=[1, 1])
    return g.model({"x": [2, 5, 9, 9]}, [out])



def _compiled(ref):
    result = compile_model(ref, impl=["int8"], parity_inputs=random_inputs(ref))
    assert result.parity.passed
    # the layer table says what the depthwise layer became and which kernel runs it
    (row,) = [r for r in result.rows if r.name == "dw"]
    assert row.impl == "int8" and row.op_after.startswith("DepthwiseConv")
    assert row.variant == runtime.kernel_variants(row.op_after.split(" ")[0])[0]
    return result.model



@pytest.mark.parametrize("per_channel,stride", [(True, 1), (False, 1), (True, 2)])
def test_a_depthwise_layer_between_int8_layers_runs_fused_on_codes(per_channel, stride):
    ref = _mobilenet_block(per_channel, stride)
    model = _compiled(ref)
    ops = [n.op_type for n in model.graph.node]
    # between the input quantizer and the float output: only integer ops
    first = ops.index("ConvInteger")
    assert ops[first:first + 4] == ["ConvInteger", "Requantize", "DepthwiseConvRequantize", "ConvInteger"]
    assert "Relu" not in ops and "Div" not in ops and ops.count("QuantizeLinear") == 1
    dw = next(n for n in model.graph.node if n.op_type == "DepthwiseConvRequantize")
    assert dw.name == "dw" and dw.domain == "qcompile"
    rq = next(n for n in model.graph.node if n.op_type == "Requantize" and n.output[0] == dw.input[0])
    y_scale = next(t for t in model.graph.initializer if t.name == rq.input[3])
    assert list(y_scale.dims) == ([6] if per_channel else [1])  # per channel: the Div's divisor
    equals_the_evaluator(model, random_inputs(ref, seed=5))


def test_a_depthwise_layer_with_a_float_reader_keeps_its_sums():
    model = _compiled(_mobilenet_block(True, last_dw=True))
    ops = [n.op_type for n in model.graph.node]
    assert "DepthwiseConvInteger" in ops and "DepthwiseConvRequantize" not in ops and "ConvInteger" in ops
    equals_the_evaluator(model, random_inputs(_mobilenet_block(True, last_dw=True), seed=6))


def test_a_relu_before_codes_below_the_zero_point_stays():
    """Signed codes after a Relu: the Relu changes codes below zero, so Requantize cannot take it."""
    ref = _mobilenet_block(False, signed_dw_input=1)
    model = _compiled(ref)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Relu") >= 1
    equals_the_evaluator(model, random_inputs(ref, seed=7))


def test_the_pass_takes_only_depthwise_conv_integers():
    g = onnx.helper
    w_dw = onnx.numpy_helper.from_array(np.zeros((4, 1, 3, 3), np.uint8), "w_dw")
    w_full = onnx.numpy_helper.from_array(np.zeros((4, 4, 3, 3), np.uint8), "w_full")
    zx, zw = onnx.numpy_helper.from_array(np.zeros(1, np.int8), "zx"), onnx.numpy_helper.from_array(np.zeros(1, np.uint8), "zw")
    nodes = [g.make_node("ConvInteger", ["x", "w_dw", "zx", "zw"], ["a"], kernel_shape=[3, 3], pads=[1] * 4, group=4),
             g.make_node("ConvInteger", ["x", "w_full", "zx", "zw"], ["b"], kernel_shape=[3, 3], pads=[1] * 4),
             g.make_node("ConvInteger", ["x", "w_dw", "zx", "zw"], ["c"], kernel_shape=[3, 3], auto_pad="SAME_UPPER", group=4)]
    graph = g.make_graph(nodes, "g", [g.make_tensor_value_info("x", onnx.TensorProto.INT8, [1, 4, 5, 5])],
                         [g.make_tensor_value_info(n, onnx.TensorProto.INT32, None) for n in "abc"], [w_dw, w_full, zx, zw])
    import onnx_ir as ir

    model = ir.serde.deserialize_model(g.make_model(graph, opset_imports=[g.make_opsetid("", 17)]))
    assert [is_depthwise_conv_integer(n) for n in model.graph] == [True, False, False]
    DepthwiseIntegerPass()(model)
    assert [n.op_type for n in model.graph] == ["DepthwiseConvInteger", "ConvInteger", "ConvInteger"]
