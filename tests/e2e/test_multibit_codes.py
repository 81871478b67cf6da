"""End to end: multi-bit layers that write the next layer's codes (BitSerialConvThreshold /
BitSerialGemmThreshold / PlaneMaxPool, qcompile.passes.multibit_thresholds) on Brevitas's BNN-PYNQ
models, and the validator's tie check on codes.

The compiled model must have no float op between two bit-serial layers, give bit for bit the output
of the same pipeline without the pass (the float chain the thresholds fold), and pass parity with the
reference with the same top-1.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper

from qcompile.compiler import compile as compile_model
from qcompile.passes.fuse_dense_chain import FuseDenseChainPass
from qcompile.passes.multibit_thresholds import CODES_KEY, MultibitThresholdsPass
from qcompile.runtime import InferenceSession
from qcompile.tie_check import adjust_for_ties
from qcompile.verify import open_session, run_session, verify, with_outputs

BITSERIAL = ("BitSerialConv", "BitSerialGemm", "BitSerialConvThreshold", "BitSerialGemmThreshold")
CODE_OPS = ("BitSerialConvThreshold", "BitSerialGemmThreshold", "PlaneMaxPool", "Reshape")


def feeders(model: onnx.ModelProto) -> dict[str, list[str]]:
    """Per bit-serial node: the op types on its input path back to the previous bit-serial node (or
    to where the path leaves the bit-serial part)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    paths = {}
    for node in model.graph.node:
        if node.op_type not in BITSERIAL:
            continue
        path, value = [], node.input[0]
        while value in producer and producer[value].op_type not in BITSERIAL:
            path.append(producer[value].op_type)
            value = producer[value].input[0]
        paths[node.name] = path if value in producer else [*path, "<input>"]
    return paths


@pytest.fixture(scope="module")
def bnn(tmp_path_factory):
    pytest.importorskip("brevitas_examples", reason="Brevitas is a test dependency (pip install -e '.[test]')")
    from brevitas_models import export_bnn_pynq

    cache = {}

    def get(cfg):
        if cfg not in cache:
            cache[cfg] = onnx.load(export_bnn_pynq(tmp_path_factory.mktemp(cfg) / f"{cfg}.onnx", cfg))
        return cache[cfg]

    return get


def without_pass(ref, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(MultibitThresholdsPass, "call", lambda self, model: ir.passes.PassResult(model, False))
        return compile_model(ref, None, check_parity=False, impl=["bitserial"]).model


@pytest.mark.parametrize("cfg,float_fed", [("cnv_2w2a", 1), ("cnv_1w2a", 1), ("tfc_2w2a", 1), ("sfc_2w2a", 1)])
def test_bnn_pynq_layers_exchange_codes(bnn, monkeypatch, cfg, float_fed):
    ref = bnn(cfg)
    # bit-serial layers (the cost model may pick int8 for some by default): their codes pass on;
    # seen with the dense chains left as separate nodes (fused, they run as one BitSerialMlp)
    with monkeypatch.context() as m:
        m.setattr(FuseDenseChainPass, "call", lambda self, model: ir.passes.PassResult(model, False))
        result = compile_model(ref, None, check_parity=True, impl=["bitserial"])
    assert result.parity.passed, result.parity.to_json()
    comp = result.model
    paths = feeders(comp)
    # only the first bit-serial layer is fed from float (the int8 / float first layer or the input)
    fed_from_float = [name for name, path in paths.items() if "QuantizePack" in path]
    assert len(fed_from_float) == float_fed, paths
    for name, path in paths.items():
        if name not in fed_from_float:
            assert all(op in CODE_OPS for op in path), (name, path)
    assert [n.op_type for n in comp.graph.node].count("QuantizePack") == float_fed
    old = without_pass(ref, monkeypatch)
    shape = [d.dim_value or 1 for d in ref.graph.input[0].type.tensor_type.shape.dim]
    new_sess, old_sess = InferenceSession(comp.SerializeToString()), InferenceSession(old.SerializeToString())
    name = ref.graph.input[0].name
    for seed in range(4):
        x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
        got, want = new_sess.run(None, {name: x})[0], old_sess.run(None, {name: x})[0]
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), seed
        report = verify(ref, comp, {name: x})
        assert report.passed and report.outputs[0].differing_top1 == 0, report.to_json()
    # and fused (the default), the same output bit for bit
    fused = compile_model(ref, None, check_parity=True, impl=["bitserial"])
    assert fused.parity.passed
    ops = [n.op_type for n in fused.model.graph.node]
    if cfg in ("tfc_2w2a", "sfc_2w2a"):
        assert ops == ["BitSerialMlp"], ops
    fused_sess = InferenceSession(fused.model.SerializeToString())
    x = np.random.default_rng(9).standard_normal(shape).astype(np.float32)
    got, want = fused_sess.run(None, {name: x})[0], new_sess.run(None, {name: x})[0]
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


# ------------------------------------------------------------------ ties judged from codes


def _tie_models(shift: float):
    """Reference x -> Quant(scale 1, 2-bit unsigned); "compiled": QuantizePack(x + shift) whose node
    records the quantizer's input (CODES_KEY), as a threshold node does."""
    q = helper.make_node("Quant", ["x", "s", "z", "b"], ["y"], domain="qonnx.custom_op.general", name="q",
                         signed=0, narrow=0, rounding_mode="ROUND")
    inits = [onnx.numpy_helper.from_array(np.array(v, np.float32), n) for n, v in (("s", 1.0), ("z", 0.0), ("b", 2.0))]
    ref = helper.make_model(helper.make_graph([q], "r", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits),
                            opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("qonnx.custom_op.general", 1)])
    add = helper.make_node("Add", ["x", "shift"], ["xs"])
    pack = helper.make_node("QuantizePack", ["xs"], ["codes"], domain="qcompile", name="pack", scale=1.0,
                            bitwidth=2, signed=0)
    entry = onnx.StringStringEntryProto(key=CODES_KEY, value='{"group": 1, "planes": 2, "signed": 0, "tensor": "x"}')
    pack.metadata_props.append(entry)
    comp = helper.make_model(
        helper.make_graph([add, pack], "c", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                          [helper.make_tensor_value_info("codes", TensorProto.UINT64, None)],
                          [onnx.numpy_helper.from_array(np.array(shift, np.float32), "shift")]),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("qcompile", 1)])
    return ref, comp


def _run(model, names, feeds):
    """What verify passes adjust_for_ties: tensors `names` of `model` in onnxruntime."""
    return run_session(open_session(with_outputs(model, names), None), feeds, "a model", names)


def test_ties_are_judged_from_codes():
    x = np.array([[0.5, 1.5, 0.2, 2.5, -3.0, 1.0]], np.float32).reshape(1, 6, 1, 1)
    ref, comp = _tie_models(1e-6)  # pushes the values at .5 (ties, half to even) to the next code
    adjusted = adjust_for_ties(ref, comp, {"x": x}, 1e-5, _run)
    assert adjusted is not None and adjusted.mismatch is None
    assert [(s.quantizer, s.tensor, s.codes) for s in adjusted.sites] == [("q", "x", 2)]  # 0.5 and 2.5
    fed = adjusted.feeds["x/tie_adjusted"]
    y = _run(adjusted.reference, ["y"], adjusted.feeds)[0]
    assert np.array_equal(y.reshape(-1), [1, 2, 0, 3, 0, 1]) and fed.reshape(-1)[0] == 1.0


def test_code_differences_away_from_a_boundary_are_mismatches():
    x = np.array([[0.3, 1.2]], np.float32).reshape(1, 2, 1, 1)
    ref, comp = _tie_models(0.4)  # 0.3 -> 0.7 and 1.2 -> 1.6: codes differ far from any tie
    adjusted = adjust_for_ties(ref, comp, {"x": x}, 1e-5, _run)
    assert adjusted is not None and "from the rounding boundary" in adjusted.mismatch
