"""LowerInt8LayersPass alone (before weight quantizers are folded, as in the pipeline): uniform
3-8 bit layers -> QuantizeLinear (+ Clip) + ConvInteger / MatMulInteger + float scale; structure,
exact integer dot product, parity, and the cases it must not fire, with their reasons."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
from graphs import GraphBuilder
from helpers import op_types

from qcompile import get_library_path
from qcompile.analysis import LayerAnalyses, analyze_model
from qcompile.ops import qonnx as qref
from qcompile.passes.lower_int8 import LowerInt8LayersPass
from qcompile.passes.report import PipelineRun
from qcompile.verify import verify


def _act(g, x, bits, signed, zp=0.0, scale=0.3):
    ins = [x, g.const(np.float32(scale), "s"), g.const(np.float32(zp), "z"), g.const(np.float32(bits), "b")]
    return g.op("Quant", ins, domain="qonnx.custom_op.general", signed=signed, narrow=0, rounding_mode="ROUND")


def _conv(abits=8, asigned=0, wbits=8, zp=0.0, pads=(1, 1, 1, 1), group=1, binary_w=False, cin=5, cout=6):
    g = GraphBuilder(3)
    xq = _act(g, "x", abits, asigned, zp)
    shape = (cout, cin // group, 3, 3)
    w = g.binary_weight(shape) if binary_w else g.quant(g.const(g.rng.standard_normal(shape).astype(np.float32)), 0.2, wbits, narrow=0)
    y = g.op("Conv", [xq, w], name="conv", kernel_shape=[3, 3], pads=list(pads), strides=[1, 1], group=group)
    return g.model({"x": [2, cin, 7, 7]}, [y])


def _dense(abits=4, asigned=1, wbits=3, op="Gemm"):
    g = GraphBuilder(4)
    xq = _act(g, "x", abits, asigned)
    shape = (10, 37) if op == "Gemm" else (37, 10)
    w = g.quant(g.const(g.rng.standard_normal(shape).astype(np.float32)), 0.3, wbits)
    attrs = dict(transB=1) if op == "Gemm" else {}
    y = g.op(op, [xq, w], name="fc", **attrs)
    return g.model({"x": [3, 37]}, [y])


def _int8_alone(ref: onnx.ModelProto):
    """The pass alone, with every layer chosen for int8 (as the cost model or --impl would)."""
    layers = analyze_model(ir.serde.deserialize_model(ref))
    model = ir.serde.deserialize_model(ref)
    with PipelineRun(analyses=LayerAnalyses({lay.name: ("int8", "") for lay in layers})).active() as run:
        modified = LowerInt8LayersPass()(model).modified
    return ir.serde.serialize_model(model), modified, run


def _inputs(ref, seed=0, scale=0.3):
    rng = np.random.default_rng(seed)
    dims = [d.dim_value for d in ref.graph.input[0].type.tensor_type.shape.dim]
    x = rng.standard_normal(dims).astype(np.float32) * 4
    x.flat[: x.size // 4] = (rng.integers(-300, 300, x.size // 4) + 0.5).astype(np.float32) * np.float32(scale)  # ties
    return {"x": x}


def _integer_dot(ref, feeds, abits, asigned, zp=0.0):
    """The reference's integer dot product D: the Conv of the activation / weight codes, exactly."""
    import torch

    from qcompile.analysis import weight_operand

    model = ir.serde.deserialize_model(ref)
    (layer,) = analyze_model(model)
    v_w = weight_operand(layer.node, layer.weight).codes
    q = qref.quant_int(feeds["x"], 0.3, zp, abits, signed=asigned) - zp
    return torch.nn.functional.conv2d(torch.tensor(q, dtype=torch.float64), torch.tensor(v_w, dtype=torch.float64),
                                      padding=1).numpy()


@pytest.mark.parametrize("abits,asigned,wbits", [(8, 0, 8), (8, 1, 8), (4, 0, 4), (3, 1, 3), (2, 0, 2)])
def test_conv_becomes_conv_integer_with_exact_dot_product(abits, asigned, wbits):
    ref = _conv(abits, asigned, wbits)
    lowered, modified, _run = _int8_alone(ref)
    assert modified
    ops = op_types(lowered)
    assert "ConvInteger" in ops and "Conv" not in ops and ops[-3:] == ["Cast", "Mul", "Add"]
    assert ("Clip" in ops) == (abits < 8)  # only a grid narrower than the 8-bit type is clipped
    feeds = _inputs(ref)
    # the int32 accumulator itself equals the reference's integer dot product, bit for bit
    acc_name = next(n.output[0] for n in lowered.graph.node if n.op_type == "ConvInteger")
    probe = onnx.ModelProto()
    probe.CopyFrom(lowered)
    probe.graph.output.append(onnx.helper.make_tensor_value_info(acc_name, onnx.TensorProto.INT32, None))
    so = ort.SessionOptions()
    so.register_custom_ops_library(get_library_path())  # the weight quantizers are not folded yet
    acc = ort.InferenceSession(probe.SerializeToString(), so, providers=["CPUExecutionProvider"]).run([acc_name], feeds)[0]
    np.testing.assert_array_equal(acc, _integer_dot(ref, feeds, abits, asigned))
    # only s_a * s_w * D + bias is rounded to float32 (verify.RTOL)
    assert verify(ref, lowered, feeds).passed


def test_binary_weights_grouped_and_unpadded_conv():
    for kwargs in (dict(binary_w=True), dict(group=5, cin=5, cout=10), dict(pads=(0, 0, 0, 0))):
        ref = _conv(**kwargs)
        lowered, modified, _ = _int8_alone(ref)
        assert modified and "ConvInteger" in op_types(lowered)
        assert verify(ref, lowered, _inputs(ref)).passed


@pytest.mark.parametrize("op", ["Gemm", "MatMul"])
@pytest.mark.parametrize("abits,asigned", [(4, 1), (8, 0), (8, 1)])
def test_dense_becomes_matmul_integer_with_parity(op, abits, asigned):
    ref = _dense(abits, asigned, 3, op)
    lowered, modified, _ = _int8_alone(ref)
    assert modified and "MatMulInteger" in op_types(lowered) and op not in op_types(lowered)
    assert verify(ref, lowered, _inputs(ref)).passed


def test_nonzero_activation_zero_point_must_not_fire_and_says_why():
    ref = _conv(4, 0, 4, zp=3.0)
    (layer,) = analyze_model(ir.serde.deserialize_model(ref))
    assert "int8" not in layer.options
    lowered, modified, run = _int8_alone(ref)
    assert not modified and "ConvInteger" not in op_types(lowered)
    (refusal,) = run.report.by_rule("IntConvToConvInteger")
    assert refusal.node == "conv" and not refusal.layer_reason  # the layer still lowers, to bit-serial
    assert refusal.reason == ("no int8 arithmetic: activation zero point is not 0 (QuantizeLinear rounds x/s, "
                              "QONNX rounds x/s + z)")


def test_eight_bit_input_defaults_to_int8_and_two_bit_to_bit_serial():
    """Without costs, an 8-bit-input layer takes int8 arithmetic (8 plane pairs otherwise); 2 bits stay bit-serial."""
    (eight,) = analyze_model(ir.serde.deserialize_model(_conv(8, 1, 1, binary_w=True)))
    assert eight.impl == "int8" and eight.target == "ConvInteger" and eight.options == ["bitserial", "int8", "float"]
    (two,) = analyze_model(ir.serde.deserialize_model(_conv(2, 0, 2)))
    assert two.impl == "bitserial" and "int8" in two.options


def _conv_bn(extra_output: bool = False):
    g = GraphBuilder(6)
    xq = _act(g, "x", 4, 0)
    w = g.quant(g.const(g.rng.standard_normal((6, 5, 3, 3)).astype(np.float32)), 0.2, 4)
    y = g.op("Conv", [xq, w], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    z = g.op("Mul", [g.bn(y, 6), g.const(np.linspace(-2, 2, 6, dtype=np.float32).reshape(1, 6, 1, 1))])
    return g.model({"x": [2, 5, 7, 7]}, [z, y] if extra_output else [z])


def test_batchnorm_and_mul_fold_into_the_int8_epilogue():
    from qcompile.compiler import compile as compile_model

    ref = _conv_bn()
    result = compile_model(ref, impl=["int8"], parity_inputs=_inputs(ref))
    ops = [n.op_type for n in result.model.graph.node]
    assert "BatchNormalization" not in ops and ops.count("Mul") == 1 and ops[-3:] == ["Cast", "Mul", "Add"]
    assert result.rows[0].op_after == "ConvInteger (+BatchNormalization, +Mul)"
    # BatchNorm's k = gamma / sqrt(var + eps) is folded in float64 once: float rounding only (verify.RTOL)
    assert result.parity.passed


def test_an_epilogue_that_is_also_a_graph_output_must_not_fold():
    from qcompile.compiler import compile as compile_model

    ref = _conv_bn(extra_output=True)
    result = compile_model(ref, impl=["int8"], parity_inputs=_inputs(ref))
    assert "BatchNormalization" in [n.op_type for n in result.model.graph.node] and result.parity.passed
    # (onnxscript's matcher itself refuses a match whose inner value leaves the pattern, before check)
    assert result.rows[0].op_after == "ConvInteger"


def _pooled(abits: int, signed: int, pads=(0, 0, 0, 0), other_reader: bool = False):
    """Quant -> MaxPool -> conv: the grid is carried through the MaxPool (PropagateGridPass)."""
    g = GraphBuilder(8)
    q = _act(g, "x", abits, signed)
    p = g.op("MaxPool", [q], kernel_shape=[3, 3], strides=[2, 2], pads=list(pads))
    w = g.quant(g.const(g.rng.standard_normal((4, 5, 3, 3)).astype(np.float32)), 0.2, 4)
    y = g.op("Conv", [p, w], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    return g.model({"x": [2, 5, 9, 9]}, [y, p] if other_reader else [y])


@pytest.mark.parametrize("abits,signed,pads", [(4, 0, (0, 0, 0, 0)), (8, 1, (1, 1, 1, 1)), (8, 0, (1, 1, 1, 1))])
def test_the_pool_runs_in_float_before_the_codes_and_the_float_quantizer_goes(abits, signed, pads):
    from qcompile.compiler import compile as compile_model

    ref = _pooled(abits, signed, pads)
    result = compile_model(ref, impl=["int8"], parity_inputs=_inputs(ref))
    ops = [n.op_type for n in result.model.graph.node]
    assert "Quant" not in ops and ops[:2] == ["MaxPool", "QuantizeLinear"]
    assert ops.index("QuantizeLinear") < ops.index("ConvInteger") and ("Clip" in ops) == (abits < 8)
    assert result.parity.passed  # the codes are exact; only s * D + bias is float (verify.RTOL)


@pytest.mark.parametrize("abits,signed,pads", [(4, 0, (1, 1, 1, 1)), (8, 1, (1, 1, 1, 1)), (3, 1, (0, 0, 0, 0))])
def test_codes_of_the_float_pool_equal_the_pooled_reference_codes_at_ties(abits, signed, pads):
    """The compiled layer's input codes against the reference's pooled codes, on inputs that are
    exact rounding ties of x / s (where quantize-then-pool and pool-then-quantize could part)."""
    import torch

    from qcompile.compiler import compile as compile_model

    ref = _pooled(abits, signed, pads)
    lowered = compile_model(ref, impl=["int8"], parity_inputs=_inputs(ref)).model
    nodes = list(lowered.graph.node)
    codes_name = next(n for n in nodes if n.op_type == "ConvInteger").input[0]
    zp_name = next(n for n in nodes if n.op_type == "QuantizeLinear").input[2]
    zp = onnx.numpy_helper.to_array(next(t for t in lowered.graph.initializer if t.name == zp_name))
    zero = int(zp.reshape(-1)[0])
    probe = onnx.ModelProto()
    probe.CopyFrom(lowered)
    probe.graph.output.append(onnx.helper.make_tensor_value_info(
        codes_name, onnx.helper.np_dtype_to_tensor_dtype(zp.dtype), None))
    rng = np.random.default_rng(abits)
    scale = np.float32(0.3)  # _act's grid
    halves = rng.integers(-80, 80, (2, 5, 9, 9)) + rng.choice([0.0, 0.5], (2, 5, 9, 9))
    x = (halves * scale).astype(np.float32)
    so = ort.SessionOptions()
    so.register_custom_ops_library(get_library_path())
    got = ort.InferenceSession(probe.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(
        [codes_name], {"x": x})[0]
    q = qref.quant_int(x, scale, 0.0, abits, signed=signed)
    want = torch.nn.functional.max_pool2d(torch.tensor(q, dtype=torch.float64), 3, 2, padding=pads[0]).numpy()
    assert np.any(np.abs(x / scale - np.round(x / scale)) == 0.5)  # the ties are there
    np.testing.assert_array_equal(got.astype(np.int64), want.astype(np.int64) + zero)


def test_a_pooled_value_with_another_reader_keeps_its_quantizer():
    from qcompile.compiler import compile as compile_model

    ref = _pooled(4, 0, other_reader=True)
    result = compile_model(ref, impl=["int8"], parity_inputs=_inputs(ref))
    assert "Quant" in [n.op_type for n in result.model.graph.node] and result.parity.passed
    reasons = {r.reason for r in result.report.by_rule("Int8CodesThroughMaxPoolClipped")}
    assert reasons <= {"the MaxPool has other readers"}


def _depthwise_per_channel(abits=4, multiplier=2, channels=4):
    """Quant(x, per-channel scale [1, C, 1, 1]) -> depthwise Conv: MobileNet's QuantReLU -> dw conv."""
    g = GraphBuilder(9)
    scale = g.rng.uniform(0.05, 0.4, (1, channels, 1, 1)).astype(np.float32)
    ins = ["x", g.const(scale, "s"), g.const(np.float32(0), "z"), g.const(np.float32(abits), "b")]
    xq = g.op("Quant", ins, domain="qonnx.custom_op.general", signed=0, narrow=0, rounding_mode="ROUND")
    shape = (channels * multiplier, 1, 3, 3)
    w = g.quant(g.const(g.rng.standard_normal(shape).astype(np.float32)), 0.25, 4, narrow=1)
    y = g.op("Conv", [xq, w], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2], group=channels)
    return g.model({"x": [2, channels, 9, 9]}, [y]), scale


@pytest.mark.parametrize("abits,multiplier", [(4, 1), (4, 2), (8, 1)])
def test_per_channel_activation_scale_into_a_depthwise_conv_takes_int8(abits, multiplier):
    import torch

    from qcompile.analysis import weight_operand

    ref, scale = _depthwise_per_channel(abits, multiplier)
    lowered, modified, _ = _int8_alone(ref)
    assert modified
    ops = op_types(lowered)
    assert "ConvInteger" in ops and "Conv" not in ops and ops.index("Div") < ops.index("QuantizeLinear")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 9, 9)).astype(np.float32) * 2
    # exact ties of x / s[c]: half-integer multiples of each channel's scale
    x[:, :, :3] = (rng.integers(0, 20, (2, 4, 3, 9)) + 0.5).astype(np.float32) * scale
    feeds = {"x": x}
    acc_name = next(n.output[0] for n in lowered.graph.node if n.op_type == "ConvInteger")
    probe = onnx.ModelProto()
    probe.CopyFrom(lowered)
    probe.graph.output.append(onnx.helper.make_tensor_value_info(acc_name, onnx.TensorProto.INT32, None))
    so = ort.SessionOptions()
    so.register_custom_ops_library(get_library_path())
    acc = ort.InferenceSession(probe.SerializeToString(), so, providers=["CPUExecutionProvider"]).run([acc_name], feeds)[0]
    # the reference's codes per channel (its own x / s[c]) and their integer depthwise dot product
    q = qref.quant_int(x, scale, 0.0, abits, signed=0)
    (layer,) = analyze_model(ir.serde.deserialize_model(ref))
    v_w = weight_operand(layer.node, layer.weight).codes
    want = torch.nn.functional.conv2d(torch.tensor(q, dtype=torch.float64), torch.tensor(v_w, dtype=torch.float64),
                                      padding=1, stride=2, groups=4).numpy()
    np.testing.assert_array_equal(acc, want)
    assert verify(ref, lowered, feeds).passed  # s_a[c] * s_w[m] * D + bias: float rounding only


def test_an_onnxruntime_without_int8_convinteger_gets_uint8_activations(monkeypatch):
    """onnxruntime before int8-activation ConvInteger (the declared floor 1.21): the plan takes
    uint8 codes offset by their zero point, exact as well (this onnxruntime runs both kernels)."""
    from qcompile import int8_plan
    from qcompile.compiler import compile as compile_model

    monkeypatch.setattr(int8_plan, "conv_integer_reads_int8", lambda: False)
    ref = _conv(abits=4, asigned=1)
    result = compile_model(ref, impl=["int8"], parity_inputs=_inputs(ref))
    conv = next(n for n in result.model.graph.node if n.op_type == "ConvInteger")
    zp = next(t for t in result.model.graph.initializer if t.name == conv.input[2])
    assert zp.data_type == onnx.TensorProto.UINT8 and onnx.numpy_helper.to_array(zp).reshape(-1)[0] == 8
    assert result.parity.passed
