"""FuseDenseChainPass (run by the compiler after the layer table) and the cost model's credit for
it: a 2-bit MLP compiles to one BitSerialMlp node whose output is bit for bit that of the separate
nodes; a chain whose intermediate has another reader stays apart; estimated per-layer choices that
would leave the 64-wide layers float go bit-serial together when the fused chain is cheaper."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from helpers import op_types, random_inputs
from test_fold_input_affine import _mlp

from qcompile import runtime
from qcompile.analysis import analyze_model
from qcompile.compiler import _shape_model, front_end
from qcompile.compiler import compile as compile_model
from qcompile.costmodel import EstimatedCosts, choose_impls, layer_model
from qcompile.passes.fuse_dense_chain import FUSED_LAYERS_KEY, FuseDenseChainPass
from qcompile.passes.pipeline import CompileOptions, compile_pipeline


def _unfused(ref):
    proto, _ = front_end(ref)
    options = CompileOptions(choices={})
    return compile_pipeline(ir.serde.deserialize_model(proto), options).model


def _run(model: ir.Model | object, feeds):
    proto = ir.serde.serialize_model(model) if isinstance(model, ir.Model) else model
    return runtime.InferenceSession(proto.SerializeToString()).run(None, feeds)[0]


def test_an_mlp_becomes_one_node_with_the_separate_nodes_output():
    ref = _mlp()
    out = compile_model(ref, None, check_parity=True, tune=False, impl=("bitserial",))
    assert out.parity.passed and op_types(out.model) == ["BitSerialMlp"]
    node = out.model.graph.node[0]
    meta = {e.key: e.value for e in node.metadata_props}
    assert meta[FUSED_LAYERS_KEY] == "fc1,fc2"
    assert [r.op_after.endswith("in BitSerialMlp") for r in out.rows] == [True, True]
    assert out.model.graph.output[0].name == ref.graph.output[0].name
    unfused = _unfused(ref)
    assert "BitSerialMlp" not in [n.op_type for n in unfused.graph]
    feeds = random_inputs(ref, seed=3)
    fused_y, separate_y = _run(out.model, feeds), _run(unfused, feeds)
    assert np.array_equal(fused_y.view(np.uint32), separate_y.view(np.uint32))


def test_a_chain_whose_codes_have_another_reader_stays_apart():
    model = _unfused(_mlp())
    pack = next(n for n in model.graph if n.op_type == "QuantizePack")
    model.graph.outputs.append(pack.outputs[0])  # its codes are also a graph output
    assert not FuseDenseChainPass()(model).modified


def test_the_cost_model_credits_a_fused_chain():
    """Per layer, float is estimated cheaper (bit-serial pays a bigger per-node cost); as one fused
    node, the chain is cheaper: both layers go bit-serial, saying why."""
    ref = _mlp()
    proto, _ = front_end(ref)
    layers = analyze_model(ir.serde.deserialize_model(proto))
    shapes = _shape_model(proto)
    models = {layer.name: layer_model(proto, layer, shapes) for layer in layers}
    assert all(m is not None for m in models.values())
    only = {impl: (s, s, 0.0, 0.0, 0.0, 0.0) for impl, s in
            {"bitserial": 3e-5, "int8": 9e-5, "float": 2e-5, "twin": 2e-5, "xnor": 9e-5, "shift": 9e-5}.items()}
    choices = choose_impls(layers, models, EstimatedCosts(only))
    assert [(c.impl, c.why) for c in choices.values()] == [("bitserial", "estimated, one BitSerialMlp")] * 2
    # a per-node cost so high that even one fused node loses: float stays
    only["bitserial"] = (9e-5, 9e-5, 0.0, 0.0, 0.0, 0.0)
    choices = choose_impls(layers, models, EstimatedCosts(only))
    assert [c.impl for c in choices.values()] == ["float", "float"]
