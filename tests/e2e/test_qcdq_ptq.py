"""Other ways in: QCDQ exports (QuantizeLinear/Clip/DequantizeLinear) and float models (PTQ)."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from click.testing import CliRunner
from graphs import GraphBuilder

from qcompile.cli import main
from qcompile.compiler import compile as compile_model
from qcompile.passes.pipeline import run_frontend
from qcompile.passes.qcdq import grid_of
from qcompile.verify import verify


def test_grid_of_reads_clip_ranges():
    assert grid_of(-2, 1) == (2, 1, 0)
    assert grid_of(-1, 1) == (2, 1, 1)
    assert grid_of(0, 3) == (2, 0, 0)
    assert grid_of(0, 14) == (4, 0, 1)
    assert grid_of(-128, 127) == (8, 1, 0)
    assert grid_of(-3, 2) is None  # not a b-bit range: must not be read as one


def _qdq_model(zero_point: int, clip=(-2, 1)) -> onnx.ModelProto:
    g = GraphBuilder(1)
    s = g.const(np.float32(0.25))
    z = g.const(np.int8(zero_point))
    q = g.op("QuantizeLinear", ["x", s, z])
    q = g.op("Clip", [q, g.const(np.int8(clip[0])), g.const(np.int8(clip[1]))])
    y = g.op("DequantizeLinear", [q, s, z])
    return g.model({"x": ["N", 8]}, [y])


def test_qcdq_becomes_quant_and_matches():
    ref = _qdq_model(0)
    normal = ir.serde.serialize_model(run_frontend(ir.serde.deserialize_model(ref)))
    quant = [n for n in normal.graph.node if n.op_type == "Quant"]
    assert [n.op_type for n in normal.graph.node] == ["Quant"]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in quant[0].attribute}
    assert attrs["signed"] == 1 and attrs["narrow"] == 0
    # exact: halves included (x / s = k + 0.5 for many x)
    x = (np.arange(-20, 21, dtype=np.float32) * 0.125).reshape(-1, 1).repeat(8, 1)[:, :8]
    report = verify(ref, normal, {"x": x})
    assert report.outputs[0].max_abs_error == 0.0


def test_qcdq_with_odd_zero_point_is_not_converted():
    normal = ir.serde.serialize_model(run_frontend(ir.serde.deserialize_model(_qdq_model(1, clip=(-1, 2)))))
    assert "Quant" not in [n.op_type for n in normal.graph.node]


def test_qcdq_with_non_bit_range_clip_is_not_converted():
    normal = ir.serde.serialize_model(run_frontend(ir.serde.deserialize_model(_qdq_model(0, clip=(-3, 2)))))
    assert "Quant" not in [n.op_type for n in normal.graph.node]


def test_brevitas_qcdq_export_compiles(tmp_path):
    pytest.importorskip("brevitas")
    from brevitas_models import export_multibit_cnn_qcdq

    ref = export_multibit_cnn_qcdq(tmp_path / "qcdq.onnx", 2, 2)
    out = tmp_path / "qcdq.q.onnx"
    result = CliRunner().invoke(main, [str(ref), "--wbits", "2", "--abits", "2", "-o", str(out),
                                       "--impl", "bitserial"])  # the bit-serial lowering (not the cost model's pick)
    assert result.exit_code == 0, result.output
    ops = [n.op_type for n in onnx.load(out).graph.node]
    assert ops.count("BitSerialConvThreshold") == 1 and ops.count("BitSerialConv") == 1  # codes between them
    for seed in range(6):
        report = verify(ref, out, seed=seed)  # against the QCDQ model itself, in onnxruntime
        assert report.passed, report.to_json()


def _float_model() -> onnx.ModelProto:
    g = GraphBuilder(3)
    x = g.op("Conv", ["input", g.const((g.rng.standard_normal((16, 1, 3, 3)) * 0.5).astype(np.float32))],
             kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    x = g.op("Relu", [g.bn(x, 16)])
    for _ in range(2):
        w = (g.rng.standard_normal((16, 16, 3, 3)) * 0.1).astype(np.float32)
        x = g.op("Relu", [g.bn(g.op("Conv", [x, g.const(w)], kernel_shape=[3, 3], pads=[1, 1, 1, 1]), 16)])
    x = g.op("Flatten", [g.op("GlobalAveragePool", [x])])
    fc = g.const(g.rng.standard_normal((10, 16)).astype(np.float32))
    x = g.op("Gemm", [x, fc, g.const(np.zeros(10, np.float32))], transB=1)
    return g.model({"input": ["N", 1, 12, 12]}, [x])


@pytest.mark.parametrize("wbits,abits", [(1, 1), (2, 2), (3, 4)])
def test_ptq_compiles_float_model(wbits, abits):
    calib = {"input": np.random.default_rng(0).standard_normal((16, 1, 12, 12)).astype(np.float32)}
    result = compile_model(_float_model(), None, wbits=wbits, abits=abits, calib=calib)
    assert result.ptq is not None and len(result.ptq.quantized) == 2  # first conv and classifier stay float
    assert result.parity.passed, result.parity.to_json()
    lowered = [r for r in result.rows if r.op_after != r.op_before]
    assert len(lowered) == 2


def test_ptq_integer_part_is_exact():
    """The compiled BitSerialConv's integer dot product equals the one of the quantized reference."""
    from qcompile.ops.bitserial import act_codes
    from qcompile.ops.xnor import int_conv2d
    from qcompile.ptq import quantize_float_model

    g = GraphBuilder(5)
    w = (g.rng.standard_normal((8, 6, 3, 3)) * 0.2).astype(np.float32)
    y = g.op("Conv", ["x", g.const(w)], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    w2 = (g.rng.standard_normal((8, 8, 3, 3)) * 0.2).astype(np.float32)
    y = g.op("Conv", [y, g.const(w2)], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    y = g.op("Conv", [y, g.const((g.rng.standard_normal((4, 8, 1, 1))).astype(np.float32))], kernel_shape=[1, 1])
    model = g.model({"x": ["N", 6, 7, 7]}, [y])
    calib = {"x": np.random.default_rng(1).standard_normal((4, 6, 7, 7)).astype(np.float32)}
    quantized, _ = quantize_float_model(model, 3, 3, calib)
    result = compile_model(quantized, None, check_parity=False, impl=["bitserial"])
    comp = result.model
    bitserial = next(n for n in comp.graph.node if n.op_type == "BitSerialConv")
    inits = {i.name: i for i in comp.graph.initializer}
    # make the compiled layer output its integer dot product: scale 1, bias 0
    for idx, value in ((2, 1.0), (3, 0.0)):
        t = inits[bitserial.input[idx]]
        t.CopyFrom(onnx.numpy_helper.from_array(np.full(8, value, np.float32), t.name))
    comp.graph.output[0].name = bitserial.output[0]
    del comp.graph.node[[n.output[0] for n in comp.graph.node].index(bitserial.output[0]) + 1:]
    from qcompile.runtime import InferenceSession

    d = InferenceSession(comp.SerializeToString()).run(None, calib)[0]
    # the reference's integers: its activation codes and weight codes, convolved exactly
    qnodes = [n for n in quantized.graph.node if n.op_type == "Quant"]
    act_quant = next(n for n in qnodes if n.input[0] != "x" and "ptq_act" in n.output[0])
    ref_inits = {i.name: onnx.numpy_helper.to_array(i) for i in quantized.graph.initializer}
    from qcompile.verify import open_session, with_outputs

    x1 = open_session(with_outputs(quantized, [act_quant.input[0]]), None).run([act_quant.input[0]], calib)[0]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in act_quant.attribute}
    v_act = act_codes(x1, scale=ref_inits[act_quant.input[1]], zero_point=0, bitwidth=3, signed=attrs["signed"],
                      narrow=0, rounding_mode="ROUND")
    wq = next(n for n in qnodes if n.output[0] == [m for m in quantized.graph.node if m.op_type == "Conv"][1].input[1])
    from qcompile.ops.qonnx import quant_int

    v_w = quant_int(ref_inits[wq.input[0]], ref_inits[wq.input[1]], 0, 3, signed=1, narrow=1).astype(np.int64)
    want = int_conv2d(v_act, v_w, pads=(1, 1, 1, 1))
    np.testing.assert_array_equal(d, want.astype(np.float32))


def test_ptq_abits_without_calibration_is_refused(tmp_path):
    path = tmp_path / "f.onnx"
    onnx.save(_float_model(), path)
    result = CliRunner().invoke(main, [str(path), "--wbits", "2", "--abits", "2"])
    assert result.exit_code == 1 and "--calib" in result.output
