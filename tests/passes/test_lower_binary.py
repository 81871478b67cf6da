"""LowerBinaryLayersPass applied alone (after the weight quantizers are folded): structure,
parity with the unrewritten model, and a case where it must not fire, with its reason."""

from __future__ import annotations

import onnx_ir as ir
from graphs import GraphBuilder, binary_conv_model

from qcompile.passes.cleanup import CleanupPass
from qcompile.passes.fold_quantizers import FoldWeightQuantizersPass
from qcompile.passes.lower_binary import LowerBinaryLayersPass
from qcompile.passes.report import PipelineRun
from qcompile.verify import verify


def _lower(proto):
    model = ir.serde.deserialize_model(proto)
    model.opset_imports.setdefault("qcompile", 1)
    with PipelineRun().active() as run:
        FoldWeightQuantizersPass()(model)
        CleanupPass()(model)
        result = LowerBinaryLayersPass()(model)
    return ir.serde.serialize_model(model), result.modified, run


def test_binary_conv_becomes_xnor_conv_with_parity():
    ref = binary_conv_model(cin=20, cout=8, bn=False)
    lowered, modified, run = _lower(ref)
    ops = [n.op_type for n in lowered.graph.node]
    assert modified and ops.count("XnorConv") == 1 and ops.count("BinarizePack") == 1 and "Conv" not in ops
    assert verify(ref, lowered).passed
    assert run.analyses.computed == 1  # check and rewrite share one analysis


def test_float_input_must_not_fire_and_says_why():
    g = GraphBuilder(1)
    y = g.op("Conv", ["x", g.binary_weight((8, 4, 3, 3))], name="conv", kernel_shape=[3, 3])
    lowered, modified, run = _lower(g.model({"x": [1, 4, 6, 6]}, [y]))
    assert not modified and [n.op_type for n in lowered.graph.node] == ["Conv"]
    (refusal,) = run.report.by_rule("BinaryConvToXnorConv")
    assert refusal.node == "conv"
    assert refusal.reason == "input is float (graph input), not quantized" and refusal.layer_reason


def test_pass_prints_as_its_name():
    assert str(LowerBinaryLayersPass()) == repr(LowerBinaryLayersPass()) == "LowerBinaryLayersPass"
