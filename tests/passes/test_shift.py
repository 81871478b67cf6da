"""Power-of-two layers: Pow2Quant / 3+-bit Quant activations x power-of-two weights -> ShiftConv / ShiftGemm.

Structure after the pipeline, parity of the compiled graph with the reference in both executors
(pure Python and onnxruntime with the C++ library), the MINW-Net choice between bit-serial and
SHIFT, and must-not-fire cases. Integer parts are checked exactly with scale-1 graphs.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from click.testing import CliRunner
from graphs import GraphBuilder

from qcompile.analysis import analyze_model
from qcompile.cli import main
from qcompile.ops.evaluator import run as run_python
from qcompile.passes.pipeline import run_pipeline
from qcompile.train.quantizers import pow2_thresholds
from qcompile.verify import verify

T3 = pow2_thresholds(3)  # AQE 3-bit activations: {0, ±¼, ±½, ±1}


def compile_proto(proto):
    return ir.serde.serialize_model(run_pipeline(ir.serde.deserialize_model(proto)))


def ops(proto):
    return [n.op_type for n in proto.graph.node]


def aqe_model(*, thresholds=T3, group=1, seed=0, gemm_trans_b=1, per_channel=True):
    """float conv -> Pow2Quant -> Conv(pow2 W) -> BN -> Flatten -> Pow2Quant -> Gemm(pow2 W)."""
    g = GraphBuilder(seed)
    x = g.op("Conv", ["x", g.const(g.rng.standard_normal((16, 3, 3, 3)).astype(np.float32) * 0.3)],
             kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    w = g.pow2_weight((24, 16 // group, 3, 3), per_channel=per_channel)
    y = g.op("Conv", [g.pow2(x, thresholds), w], name="conv", kernel_shape=[3, 3], pads=[1, 0, 2, 1],
             strides=[2, 1], group=group)
    y = g.bn(y, 24)
    y = g.op("Flatten", [y])
    shape = (5, 24 * 5 * 7) if gemm_trans_b else (24 * 5 * 7, 5)
    wg = g.pow2_weight(shape, per_channel=False)
    y = g.op("Gemm", [g.pow2(y, thresholds), wg], name="fc", transB=gemm_trans_b)
    return g.model({"x": ["N", 3, 8, 8]}, [y])


def _check_parity(ref, comp, batch=4):
    feeds = {"x": np.random.default_rng(3).standard_normal((batch, 3, 8, 8)).astype(np.float32)}
    want = run_python(ref, feeds)[0]
    got = run_python(comp, feeds)[0]
    # float parts only: BN and the scales folded into one per-channel multiply-add
    assert np.max(np.abs(want - got)) <= 1e-5 * max(1.0, np.max(np.abs(want)))
    report = verify(ref, comp, feeds)  # onnxruntime with the C++ kernels
    assert report.passed, report.to_json()
    assert report.outputs[0].differing_top1 == 0


@pytest.mark.parametrize("kw", [{}, {"group": 2}, {"gemm_trans_b": 0}, {"thresholds": pow2_thresholds(4)},
                                {"per_channel": False}])
def test_pow2_layers_lower_to_shift_ops_and_match(kw):
    ref = aqe_model(**kw)
    comp = compile_proto(ref)
    assert ops(comp) == ["Conv", "ShiftConv", "Flatten", "ShiftGemm"]
    _check_parity(ref, comp)


def test_shift_weights_are_four_bit_codes():
    comp = compile_proto(aqe_model())
    inits = {t.name: t for t in comp.graph.initializer}
    conv = next(n for n in comp.graph.node if n.op_type == "ShiftConv")
    w = inits[conv.input[1]]
    assert w.data_type == 2 and list(w.dims) == [24, (16 * 9 + 1) // 2]  # uint8, two codes a byte
    attrs = {a.name: a for a in conv.attribute}
    assert attrs["act_mode"].s == b"pow2" and list(attrs["act_thresholds"].floats) == pytest.approx(T3)


def test_integer_part_exact():
    """Unit scales: the compiled output is D * 2^-(L-1), compared with ==."""
    g = GraphBuilder(9)
    e = g.rng.integers(0, 4, (7, 65, 3, 3))
    ints = np.left_shift(1, e) * g.rng.choice([-1, 0, 1], e.shape)
    w = g.quant(g.const(ints.astype(np.float32)), 1.0, 5, narrow=1)
    y = g.op("Conv", [g.pow2("x", T3), w], kernel_shape=[3, 3], pads=[2, 1, 0, 1], dilations=[2, 1])
    ref = g.model({"x": ["N", 65, 6, 9]}, [y])
    comp = compile_proto(ref)
    assert ops(comp) == ["ShiftConv"]
    feeds = {"x": np.random.default_rng(1).uniform(-1.2, 1.2, (2, 65, 6, 9)).astype(np.float32)}
    want = run_python(ref, feeds)[0]
    np.testing.assert_array_equal(run_python(comp, feeds)[0], want)
    from qcompile.runtime import InferenceSession

    np.testing.assert_array_equal(InferenceSession(comp.SerializeToString()).run(None, feeds)[0], want)


def test_binary_weights_with_pow2_input_use_shift():
    g = GraphBuilder(4)
    y = g.op("Conv", [g.pow2("x", T3), g.binary_weight((8, 5, 3, 3))], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    ref = g.model({"x": ["N", 5, 6, 6]}, [y])
    comp = compile_proto(ref)
    assert ops(comp) == ["ShiftConv"]
    assert verify(ref, comp, batch=2).passed


def _uniform_model(wbits_grid: str, abits: int):
    g = GraphBuilder(5)
    xq = g.quant("x", 0.25, abits, signed=0)
    if wbits_grid == "pow2":
        w = g.pow2_weight((6, 4, 3, 3), max_exponent=2)  # 3-bit power-of-two grid
    else:
        w = g.quant(g.const(g.rng.standard_normal((6, 4, 3, 3)).astype(np.float32)), 0.3, 3, narrow=1)
    return g.model({"x": ["N", 4, 5, 5]}, [g.op("Conv", [xq, w], kernel_shape=[3, 3], pads=[1, 1, 1, 1])])


def test_minw_rule_three_bit_uniform_input_and_pow2_weights_use_shift():
    ref = _uniform_model("pow2", 3)
    (layer,) = analyze_model(ir.serde.deserialize_model(ref))
    assert (layer.weight.bits, layer.input.bits, layer.target) == (3, 3, "ShiftConv")
    comp = compile_proto(ref)
    assert ops(comp) == ["ShiftConv"]
    attrs = {a.name: a for a in comp.graph.node[0].attribute}
    assert attrs["act_mode"].s == b"uniform" and attrs["act_bitwidth"].i == 3
    assert verify(ref, comp, batch=2).passed


def test_minw_rule_two_bit_input_uses_bitserial_not_shift():
    comp = compile_proto(_uniform_model("pow2", 2))
    assert ops(comp) == ["QuantizePack", "BitSerialConv"]


def test_uniform_weights_do_not_use_shift():
    comp = compile_proto(_uniform_model("uniform", 3))
    assert "ShiftConv" not in ops(comp) and "BitSerialConv" in ops(comp)


def test_pow2_input_with_non_pow2_weights_takes_int8_not_shift():
    """No SHIFT lowering (3 is no power-of-two multiple of 1), but int8 arithmetic is exact: the
    Pow2Quant's codes are integers, the weights' too."""
    g = GraphBuilder(6)
    vals = np.tile(np.array([1.0, 3.0, -2.0], np.float32).reshape(1, 3, 1, 1), (4, 1, 1, 1))
    w = g.quant(g.const(vals), 1.0, 3, narrow=1)
    ref = g.model({"x": ["N", 3, 4, 4]}, [g.op("Conv", [g.pow2("x", T3), w], kernel_shape=[1, 1])])
    (layer,) = analyze_model(ir.serde.deserialize_model(ref))
    assert "shift" not in layer.options and layer.options == ["int8", "float"] and layer.impl == "int8"
    assert ops(compile_proto(ref)) == ["Pow2Quant", "QuantizeLinear", "ConvInteger", "Cast", "Mul", "Add"]


def test_pow2_input_with_float_weights_stays_float():
    g = GraphBuilder(6)
    w = g.const(g.rng.standard_normal((4, 3, 1, 1)).astype(np.float32))
    ref = g.model({"x": ["N", 3, 4, 4]}, [g.op("Conv", [g.pow2("x", T3), w], kernel_shape=[1, 1])])
    assert ops(compile_proto(ref)) == ["Pow2Quant", "Conv"]


def test_cli_reads_pow2_bit_widths(tmp_path):
    import onnx

    path = tmp_path / "aqe.onnx"
    onnx.save(aqe_model(), path)
    res = CliRunner().invoke(main, ["inspect", str(path)])
    assert res.exit_code == 0, res.output
    assert "ShiftConv" in res.output and "ShiftGemm" in res.output
    res = CliRunner().invoke(main, [str(path), "--wbits", "3", "--abits", "2", "-o", str(tmp_path / "o.onnx")])
    assert res.exit_code != 0 and "Pow2Quant(3 bits)" in res.output and "--abits 3" in res.output
    assert not (tmp_path / "o.onnx").exists()
    res = CliRunner().invoke(main, [str(path), "--wbits", "3", "--abits", "3", "-o", str(tmp_path / "o.onnx")])
    assert res.exit_code == 0, res.output
    assert "PARITY OK" in res.output


def _pow2quant_weight(g, shape, thresholds=T3):
    """AQE's export form: Pow2Quant over a constant holding the exact levels."""
    levels = np.array([0.0, 0.25, 0.5, 1.0], np.float32)
    w = g.rng.choice(levels, shape) * g.rng.choice([-1.0, 1.0], shape)
    return g.pow2(g.const(w.astype(np.float32), "w"), thresholds)


def test_pow2quant_weights_declare_their_bits_whatever_levels_are_used():
    g = GraphBuilder(7)
    w = g.pow2(g.const(np.full((4, 3, 1, 1), 0.25, np.float32) * np.array([1, -1, 0], np.float32).reshape(1, 3, 1, 1)),
               T3)  # only {0, ±¼} used: the values alone would read as ternary
    ref = g.model({"x": ["N", 3, 4, 4]}, [g.op("Conv", [g.pow2("x", T3), w], kernel_shape=[1, 1])])
    (layer,) = analyze_model(ir.serde.deserialize_model(ref))
    assert (layer.weight.bits, layer.weight.source, layer.target) == (3, "Pow2Quant(3 bits)", "ShiftConv")
    comp = compile_proto(ref)
    assert ops(comp) == ["ShiftConv"]  # the weight's Pow2Quant is folded into the codes
    assert verify(ref, comp, batch=2).passed


def test_pow2quant_weights_with_two_bit_input_use_bitserial():
    g = GraphBuilder(8)
    xq = g.quant("x", 0.5, 2, signed=1, narrow=1)  # AQE's ternary activations
    ref = g.model({"x": ["N", 5, 6, 6]},
                  [g.op("Conv", [xq, _pow2quant_weight(g, (6, 5, 3, 3))], kernel_shape=[3, 3], pads=[1, 1, 1, 1])])
    comp = compile_proto(ref)
    assert ops(comp) == ["QuantizePack", "BitSerialConv"]
    report = verify(ref, comp, batch=3)
    assert report.passed and report.outputs[0].max_abs_error == 0.0  # power-of-two scales: exact
