"""Int8RequantizePass: an int8 layer feeding another int8 layer (directly, or through a MaxPool)
hands over its codes with one qcompile::Requantize instead of onnxruntime's Cast -> Mul -> Add ->
[MaxPool] -> QuantizeLinear -> Clip; the compiled model's outputs equal what the pure-Python
evaluator computes from the same graph, and the reference's within the float epilogue's rounding."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from graphs import GraphBuilder
from helpers import equals_the_evaluator, random_inputs

from qcompile.compiler import compile as compile_model
from qcompile.ops import qonnx as qref
from qcompile.runtime import InferenceSession


def _act(g, x, bits, signed, scale=0.3):
    ins = [x, g.const(np.float32(scale), "s"), g.const(np.float32(0.0), "z"), g.const(np.float32(bits), "b")]
    return g.op("Quant", ins, domain="qonnx.custom_op.general", signed=signed, narrow=0, rounding_mode="ROUND")


def _two_convs(pool: dict | None = None, signed: int = 0, bits: int = 4, extra_output: bool = False):
    """Quant -> Conv -> BatchNorm -> Mul (negative and zero channel scales) -> Quant -> [MaxPool] -> Conv."""
    g = GraphBuilder(11)
    w1 = g.quant(g.const(g.rng.standard_normal((6, 5, 3, 3)).astype(np.float32)), 0.2, 4)
    y = g.op("Conv", [_act(g, "x", bits, 0), w1], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    y = g.op("Mul", [g.bn(y, 6), g.const(np.linspace(-2, 2, 6, dtype=np.float32).reshape(1, 6, 1, 1))])
    q = _act(g, y, bits, signed, scale=0.5)
    if pool is not None:
        q = g.op("MaxPool", [q], **pool)
    w2 = g.quant(g.const(g.rng.standard_normal((4, 6, 3, 3)).astype(np.float32)), 0.2, 4)
    z = g.op("Conv", [q, w2], name="conv2", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    return g.model({"x": [2, 5, 12, 12]}, [z, y] if extra_output else [z])


def _two_dense(signed: int = 1):
    g = GraphBuilder(12)
    w1 = g.quant(g.const(g.rng.standard_normal((16, 20)).astype(np.float32)), 0.2, 4)
    y = g.op("MatMul", [_act(g, "x", 4, 0), w1], name="fc1")
    y = g.op("Add", [g.op("Mul", [y, g.const(np.linspace(-1, 1, 20, dtype=np.float32))]), g.const(np.float32(0.25))])
    w2 = g.quant(g.const(g.rng.standard_normal((20, 7)).astype(np.float32)), 0.2, 4)
    z = g.op("MatMul", [_act(g, y, 4, signed, scale=0.5), w2], name="fc2")
    return g.model({"x": [3, 16]}, [z])



def _compile(ref):
    result = compile_model(ref, impl=["int8"], parity_inputs=random_inputs(ref))
    assert result.parity.passed
    return result



@pytest.mark.parametrize("signed,bits", [(0, 4), (1, 4), (1, 8), (0, 2)])
def test_an_int8_layer_hands_its_codes_to_the_next_with_one_requantize(signed, bits):
    ref = _two_convs(signed=signed, bits=bits)
    result = _compile(ref)
    ops = [n.op_type for n in result.model.graph.node]
    assert ops.count("Requantize") == 1 and ops.count("QuantizeLinear") == 1  # only the first layer's input
    assert ops.index("Requantize") == ops.index("ConvInteger") + 1 and "Clip" not in ops[ops.index("Requantize"):]
    assert result.rows[0].op_after.endswith("+Requantize)")
    equals_the_evaluator(result.model, random_inputs(ref, seed=3))


@pytest.mark.parametrize("pool", [dict(kernel_shape=[2, 2], strides=[2, 2]),
                                  dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])])
def test_a_maxpool_between_two_int8_layers_runs_inside_requantize(pool):
    ref = _two_convs(pool=pool, signed=1)
    result = _compile(ref)
    ops = [n.op_type for n in result.model.graph.node]
    assert "MaxPool" not in ops and ops.count("Requantize") == 1
    rq = next(n for n in result.model.graph.node if n.op_type == "Requantize")
    assert [list(a.ints) for a in rq.attribute if a.name == "kernel_shape"] == [pool["kernel_shape"]]
    assert "+MaxPool, +Requantize" in result.rows[0].op_after
    equals_the_evaluator(result.model, random_inputs(ref, seed=4))


def test_a_ceil_mode_maxpool_stays_a_float_pool_with_the_reason():
    ref = _two_convs(pool=dict(kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1))
    result = _compile(ref)
    ops = [n.op_type for n in result.model.graph.node]
    assert "MaxPool" in ops and "Requantize" not in ops
    reasons = {r.reason for r in result.report.by_rule("Int8EpilogueToRequantizePooledClipped")}
    assert "MaxPool ceil_mode/storage_order is not supported" in reasons  # chains.maxpool_refusal


def test_a_float_output_with_another_reader_keeps_the_chain():
    result = _compile(_two_convs(extra_output=True))
    assert "Requantize" not in [n.op_type for n in result.model.graph.node]


def test_dense_layers_requantize_along_the_last_axis():
    ref = _two_dense()
    result = _compile(ref)
    rq = [n for n in result.model.graph.node if n.op_type == "Requantize"]
    assert len(rq) == 1 and [a.i for a in rq[0].attribute if a.name == "axis"] == [-1]
    equals_the_evaluator(result.model, random_inputs(ref, seed=5))


def _int8_then_float(relu: bool, per_channel: bool, signed: int):
    """Quant -> Conv (int8) -> BatchNorm -> [Relu] -> Quant (per-tensor or per-channel scale) ->
    depthwise Conv left float: MobileNet's pointwise conv -> QuantReLU -> depthwise conv."""
    g = GraphBuilder(13)
    w1 = g.quant(g.const(g.rng.standard_normal((6, 5, 1, 1)).astype(np.float32)), 0.2, 4)
    y = g.bn(g.op("Conv", [_act(g, "x", 4, 0), w1], name="pw", kernel_shape=[1, 1]), 6)
    if relu:
        y = g.op("Relu", [y])
    scale = g.rng.uniform(0.1, 0.4, (1, 6, 1, 1)).astype(np.float32) if per_channel else np.float32(0.3)
    ins = [y, g.const(scale, "sq"), g.const(np.float32(0.0), "zq"), g.const(np.float32(4), "bq")]
    q = g.op("Quant", ins, domain="qonnx.custom_op.general", signed=signed, narrow=0, rounding_mode="ROUND")
    w2 = g.quant(g.const(g.rng.standard_normal((6, 1, 3, 3)).astype(np.float32)), 0.2, 4)
    z = g.op("Conv", [q, w2], name="dw", kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=6)
    return g.model({"x": [2, 5, 9, 9]}, [z])


@pytest.mark.parametrize("relu,per_channel,signed", [(True, True, 0), (True, False, 1), (False, True, 1), (False, False, 0)])
def test_a_float_reader_behind_a_quant_gets_dequantized_codes(relu, per_channel, signed):
    ref = _int8_then_float(relu, per_channel, signed)
    result = compile_model(ref, impl=["int8", "dw=float"], parity_inputs=random_inputs(ref))
    assert result.parity.passed
    ops = [n.op_type for n in result.model.graph.node]
    assert "Quant" not in ops and "Relu" not in ops and ops.count("Requantize") == 1
    assert ops.index("DequantizeLinear") == ops.index("Requantize") + 1 and ops[-1] == "Conv"
    # the dequantized codes are what the replaced chain computed: Quant([Relu](float(acc) * s + b)),
    # from the compiled graph's own sums and the epilogue's constants, bit for bit
    feeds = random_inputs(ref, seed=6)
    nodes = {n.op_type: n for n in result.model.graph.node}
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in result.model.graph.initializer}
    acc = _probe(result.model, nodes["ConvInteger"].output[0], feeds, onnx.TensorProto.INT32)
    rq = nodes["Requantize"]
    y = acc.astype(np.float32) * inits[rq.input[1]].reshape(1, -1, 1, 1) + inits[rq.input[2]].reshape(1, -1, 1, 1)
    if relu:
        y = np.maximum(y, np.float32(0))
    q_scale = next(t for t in ref.graph.initializer if t.name == next(n for n in ref.graph.node if n.op_type == "Quant"
                                                                      and n.output[0] == _dw_input(ref)).input[1])
    want = qref.quant(y, onnx.numpy_helper.to_array(q_scale), np.float32(0), 4, signed=signed)
    np.testing.assert_array_equal(_probe(result.model, nodes["DequantizeLinear"].output[0], feeds), want)


def _dw_input(model) -> str:
    return next(n for n in model.graph.node if n.name == "dw").input[0]


def _probe(model, tensor: str, feeds, elem=onnx.TensorProto.FLOAT) -> np.ndarray:
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.append(onnx.helper.make_tensor_value_info(tensor, elem, None))
    return InferenceSession(probe.SerializeToString()).run([tensor], feeds)[0]


T3 = [2.0 ** -2.5, 2.0 ** -1.5, 2.0 ** -0.5]  # the trainer's 3-level (4-bit) Pow2Quant thresholds


def _pow2_convs(pool: bool, clip=(-1.0, 1.0), negative_gamma: bool = False):
    """The trainer's ConvNet blocks at W1/A3: Pow2Quant -> binary Conv -> [MaxPool] -> BatchNorm ->
    Clip -> Pow2Quant -> binary Conv."""
    g = GraphBuilder(14)
    y = g.op("Conv", [g.pow2("x", T3), g.binary_weight((6, 4, 3, 3))], name="conv1", kernel_shape=[3, 3],
             pads=[1, 1, 1, 1])
    if pool:
        y = g.op("MaxPool", [y], kernel_shape=[2, 2], strides=[2, 2])
    gamma = g.rng.uniform(0.5, 1.5, 6).astype(np.float32) * (np.array([1, -1, 1, 1, -1, 1], np.float32)
                                                               if negative_gamma else np.float32(1))
    y = g.op("BatchNormalization", [y, g.const(gamma), g.const(g.rng.standard_normal(6).astype(np.float32) * 0.1),
                                    g.const(g.rng.standard_normal(6).astype(np.float32)),
                                    g.const(g.rng.uniform(0.5, 2, 6).astype(np.float32))])
    y = g.op("Clip", [y, g.const(np.float32(clip[0])), g.const(np.float32(clip[1]))])
    z = g.op("Conv", [g.pow2(y, T3), g.binary_weight((5, 6, 3, 3))], name="conv2", kernel_shape=[3, 3],
             pads=[1, 1, 1, 1])
    return g.model({"x": [2, 4, 10, 10]}, [z])


@pytest.mark.parametrize("pool", [False, True])
def test_pow2_activations_between_int8_layers_are_requantized(pool):
    ref = _pow2_convs(pool)
    result = _compile(ref)
    ops = [n.op_type for n in result.model.graph.node]
    assert ops.count("ConvInteger") == 2 and ops.count("Requantize") == 1 and ops.count("Pow2Quant") == 1
    assert "BatchNormalization" not in ops and "MaxPool" not in ops and "Clip" not in ops
    rq = next(n for n in result.model.graph.node if n.op_type == "Requantize")
    assert [list(a.floats) for a in rq.attribute if a.name == "thresholds"] == [pytest.approx(T3)]
    equals_the_evaluator(result.model, random_inputs(ref, seed=7))


def test_a_negative_batchnorm_slope_keeps_it_behind_the_maxpool():
    ref = _pow2_convs(pool=True, negative_gamma=True)
    result = _compile(ref)
    ops = [n.op_type for n in result.model.graph.node]
    assert ops.index("MaxPool") < ops.index("BatchNormalization") and "Requantize" not in ops
    reasons = {r.reason for r in result.report.by_rule("BatchNormBeforeMaxPoolAfterInt8")}
    assert any("not positive" in r for r in reasons)


def test_a_clip_inside_the_thresholds_keeps_the_chain():
    ref = _pow2_convs(pool=False, clip=(-0.5, 0.5))
    result = _compile(ref)
    assert "Requantize" not in [n.op_type for n in result.model.graph.node]
    reasons = {r.reason for r in result.report.by_rule("Int8EpilogueToClippedPow2Codes")}
    assert "the Clip before the Pow2Quant cuts inside its thresholds" in reasons


@pytest.mark.parametrize("shape_op", ["Flatten", "Reshape"])
def test_a_conv_hands_its_codes_through_a_flatten_to_a_dense_layer(shape_op):
    """Brevitas CNV's last conv -> BatchNorm -> Quant -> Flatten -> dense: the hoisted Quant goes
    and the codes are written before the reshape, so one Requantize joins the two layers."""
    g = GraphBuilder(15)
    w1 = g.quant(g.const(g.rng.standard_normal((6, 5, 3, 3)).astype(np.float32)), 0.2, 4)
    y = g.bn(g.op("Conv", [_act(g, "x", 4, 0), w1], name="conv", kernel_shape=[3, 3]), 6)
    q = _act(g, y, 4, 1, scale=0.5)
    f = g.op("Flatten", [q]) if shape_op == "Flatten" else g.op("Reshape", [q, g.const(np.array([2, -1], np.int64))])
    w2 = g.quant(g.const(g.rng.standard_normal((6 * 3 * 3, 7)).astype(np.float32)), 0.2, 4)
    ref = g.model({"x": [2, 5, 5, 5]}, [g.op("MatMul", [f, w2], name="fc")])
    result = _compile(ref)
    ops = [n.op_type for n in result.model.graph.node]
    assert "Quant" not in ops and ops.count("Requantize") == 1
    assert ops[ops.index("Requantize") + 1] == shape_op and ops[ops.index("Requantize") + 2] == "MatMulInteger"
    equals_the_evaluator(result.model, random_inputs(ref, seed=8))

