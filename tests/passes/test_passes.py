"""Rewrite tests, two halves each: the structure after the pass, and parity with the unrewritten
model in onnxruntime; plus the cases where a rule must not fire."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from graphs import GraphBuilder, binary_conv_model, binary_dense_model

from qcompile.passes.fold_quantizers import FoldWeightQuantizersPass
from qcompile.passes.pipeline import run_pipeline
from qcompile.verify import verify


def compile_proto(proto: onnx.ModelProto) -> onnx.ModelProto:
    return ir.serde.serialize_model(run_pipeline(ir.serde.deserialize_model(proto)))


def ops(proto: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in proto.graph.node]


def assert_parity(ref: onnx.ModelProto, comp: onnx.ModelProto) -> None:
    report = verify(ref, comp, batch=3, seed=1)
    assert report.passed, report.to_json()


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(bn=False, bias=True),
        dict(pads=(0, 1, 2, 1), group=2),
        dict(cin=65, cout=3, act_scale=0.5),
        dict(cin=16, cout=16, group=16),  # depthwise
    ],
)
def test_binary_conv_lowers_to_xnorconv(kwargs):
    ref = binary_conv_model(**kwargs)
    comp = compile_proto(ref)
    assert ops(comp) == ["BinarizePack", "XnorConv"]
    xnor = comp.graph.node[1]
    assert xnor.domain == "qcompile"
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in xnor.attribute}
    assert attrs["in_channels"] == kwargs.get("cin", 64)
    assert attrs["group"] == kwargs.get("group", 1)
    packed_w = {i.name: i for i in comp.graph.initializer}[xnor.input[1]]
    assert packed_w.data_type == onnx.TensorProto.UINT64
    assert_parity(ref, comp)


@pytest.mark.parametrize("op", ["Gemm", "MatMul"])
def test_binary_dense_lowers_to_xnorgemm(op):
    ref = binary_dense_model(op=op)
    comp = compile_proto(ref)
    assert ops(comp) == ["BinarizePack", "XnorGemm"]
    assert_parity(ref, comp)


def test_batchnorm_mul_add_fold_into_output_transform():
    g = GraphBuilder(3)
    y = g.op("Conv", [g.bipolar("x"), g.binary_weight((8, 8, 3, 3))], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    y = g.bn(y, 8)
    y = g.op("Mul", [y, g.const(np.linspace(0.5, 2, 8, dtype=np.float32).reshape(8, 1, 1))])
    y = g.op("Add", [y, g.const(np.float32(0.25))])
    ref = g.model({"x": ["N", 8, 5, 6]}, [y])
    comp = compile_proto(ref)
    assert ops(comp) == ["BinarizePack", "XnorConv"]
    folded = {p.key: p.value for p in comp.graph.node[1].metadata_props}["qcompile.folded"]
    assert folded == "BatchNormalization,Mul,Add"
    assert comp.graph.output[0].name == ref.graph.output[0].name
    assert_parity(ref, comp)


def test_float_weights_do_not_lower():
    g = GraphBuilder()
    w = g.const(np.random.default_rng(0).standard_normal((4, 4, 3, 3)).astype(np.float32))
    y = g.op("Conv", [g.bipolar("x"), w], kernel_shape=[3, 3])
    comp = compile_proto(g.model({"x": [1, 4, 6, 6]}, [y]))
    assert "XnorConv" not in ops(comp) and "Conv" in ops(comp)


def test_multilevel_weights_do_not_lower_to_xnor():
    g = GraphBuilder()
    w = g.quant(g.const(np.random.default_rng(0).standard_normal((4, 4, 3, 3)).astype(np.float32)), 0.5, 2)
    y = g.op("Conv", [g.bipolar("x"), w], kernel_shape=[3, 3])
    ref = g.model({"x": [1, 4, 6, 6]}, [y])
    comp = compile_proto(ref)
    assert ops(comp) == ["BipolarQuant", "Conv"]  # the weight quantizer is folded, nothing lowered
    assert_parity(ref, comp)


def test_float_activation_does_not_lower():
    g = GraphBuilder()
    y = g.op("Conv", ["x", g.binary_weight((4, 4, 3, 3))], kernel_shape=[3, 3])
    comp = compile_proto(g.model({"x": [1, 4, 6, 6]}, [y]))
    assert ops(comp) == ["Conv"]


def test_auto_pad_same_does_not_lower():
    g = GraphBuilder()
    y = g.op("Conv", [g.bipolar("x"), g.binary_weight((4, 4, 3, 3))], kernel_shape=[3, 3], auto_pad="SAME_UPPER")
    comp = compile_proto(g.model({"x": [1, 4, 6, 6]}, [y]))
    assert "XnorConv" not in ops(comp)


def test_per_channel_activation_scale_does_not_lower():
    g = GraphBuilder()
    xq = g.bipolar("x", np.linspace(0.5, 1, 4, dtype=np.float32).reshape(1, 4, 1, 1))
    y = g.op("Conv", [xq, g.binary_weight((4, 4, 3, 3))], kernel_shape=[3, 3])
    comp = compile_proto(g.model({"x": [1, 4, 6, 6]}, [y]))
    assert "XnorConv" not in ops(comp)


def test_affine_with_spatial_operand_does_not_fold():
    g = GraphBuilder()
    y = g.op("Conv", [g.bipolar("x"), g.binary_weight((4, 4, 3, 3))], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    y = g.op("Mul", [y, g.const(np.random.default_rng(1).standard_normal((1, 1, 6, 6)).astype(np.float32))])
    ref = g.model({"x": [2, 4, 6, 6]}, [y])
    comp = compile_proto(ref)
    assert ops(comp) == ["BinarizePack", "XnorConv", "Mul"]
    assert_parity(ref, comp)


def test_affine_does_not_fold_when_conv_output_has_other_users():
    g = GraphBuilder()
    c = g.op("Conv", [g.bipolar("x"), g.binary_weight((4, 4, 3, 3))], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    bn = g.bn(c, 4)
    y = g.op("Add", [bn, c])  # residual-style second use of the conv output
    ref = g.model({"x": [2, 4, 6, 6]}, [y])
    comp = compile_proto(ref)
    assert ops(comp) == ["BinarizePack", "XnorConv", "BatchNormalization", "Add"]
    assert_parity(ref, comp)


def test_two_binary_convs_share_one_pack():
    g = GraphBuilder()
    xq = g.bipolar("x")
    a = g.op("Conv", [xq, g.binary_weight((4, 4, 3, 3))], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    b = g.op("Conv", [xq, g.binary_weight((4, 4, 1, 1))], kernel_shape=[1, 1])
    ref = g.model({"x": [2, 4, 6, 6]}, [g.op("Add", [a, b])])
    comp = compile_proto(ref)
    assert sorted(ops(comp)) == ["Add", "BinarizePack", "XnorConv", "XnorConv"]
    assert_parity(ref, comp)


def test_fold_weight_quantizers_structure_and_values():
    g = GraphBuilder()
    w = g.binary_weight((4, 4, 3, 3))
    y = g.op("Conv", ["x", w], kernel_shape=[3, 3])
    model = ir.serde.deserialize_model(g.model({"x": [1, 4, 6, 6]}, [y]))
    result = FoldWeightQuantizersPass()(model)
    assert result.modified
    assert [n.op_type for n in model.graph] == ["Conv"]
    folded = model.graph.node(0).inputs[1].const_value.numpy()
    mags = np.abs(folded).reshape(4, -1)
    assert np.all(mags == mags[:, :1])  # +-alpha per output channel
    assert not FoldWeightQuantizersPass()(model).modified  # nothing left to fold: must not fire


def _flatten_dense_model(act_scale) -> onnx.ModelProto:
    g = GraphBuilder(6)
    q = g.bipolar("x", act_scale)
    flat = g.op("Flatten", [q], axis=1)
    y = g.op("Gemm", [flat, g.binary_weight((5, 4 * 3 * 3))], name="fc", transB=1)
    return g.model({"x": [3, 4, 3, 3]}, [y])


def test_quantizer_hoisted_over_flatten_then_dense_lowers():
    ref = _flatten_dense_model(1.0)
    comp = compile_proto(ref)
    assert ops(comp) == ["Flatten", "BinarizePack", "XnorGemm"]
    assert_parity(ref, comp)


def test_per_channel_quantizer_is_not_hoisted():
    ref = _flatten_dense_model(np.linspace(0.5, 1, 4, dtype=np.float32).reshape(1, 4, 1, 1))
    comp = compile_proto(ref)
    assert ops(comp) == ["BipolarQuant", "Flatten", "Gemm"]
    assert_parity(ref, comp)
