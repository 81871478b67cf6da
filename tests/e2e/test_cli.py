"""The qcompile command: compile, inspect, verify, bench, and every refusal with its message."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from graphs import GraphBuilder, binary_conv_model

from qcompile.cli import main


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def binary_model(tmp_path):
    path = tmp_path / "bin.onnx"
    onnx.save(binary_conv_model(cin=64, cout=64), path)
    return path


def test_compile_writes_model_and_prints_table_and_parity(binary_model, tmp_path):
    out = tmp_path / "out" / "compiled.onnx"
    result = run(binary_model, "--wbits", "1", "--abits", "1", "-o", out)
    assert result.exit_code == 0, result.output
    assert out.is_file()
    assert "Conv -> XnorConv" in result.output
    assert "PARITY OK" in result.output
    assert "(28.8x)" in result.output  # 64x64x3x3 fp32 -> packed bits + scale + bias
    assert [n.op_type for n in onnx.load(out).graph.node] == ["BinarizePack", "XnorConv"]


def test_default_output_path(binary_model):
    result = run("compile", binary_model)
    assert result.exit_code == 0, result.output
    assert binary_model.with_name("bin.q.onnx").is_file()


def test_inspect_prints_table_without_writing(binary_model):
    result = run("inspect", binary_model)
    assert result.exit_code == 0, result.output
    assert "-> XnorConv" in result.output
    assert not binary_model.with_name("bin.q.onnx").exists()


def test_missing_file(tmp_path):
    result = run(tmp_path / "nope.onnx", "--wbits", "1")
    assert result.exit_code == 1
    assert "no such file" in result.output and "Traceback" not in result.output


def test_not_an_onnx_file(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_text("this is not a protobuf")
    result = run(bad, "--wbits", "1")
    assert result.exit_code == 1
    assert "is not an ONNX model" in result.output and "Traceback" not in result.output


def test_wbits_on_non_binary_weights_names_the_layer(tmp_path):
    g = GraphBuilder()
    w = g.quant(g.const(np.random.default_rng(0).standard_normal((4, 4, 3, 3)).astype(np.float32)), 0.5, 2)
    y = g.op("Conv", [g.bipolar("x"), w], name="conv_two_bit", kernel_shape=[3, 3])
    path = tmp_path / "w2.onnx"
    onnx.save(g.model({"x": [1, 4, 6, 6]}, [y]), path)
    result = run(path, "--wbits", "1", "-o", tmp_path / "o.onnx")
    assert result.exit_code == 1
    assert "'conv_two_bit'" in result.output and "Quant(2 bits)" in result.output
    assert "--wbits 2" in result.output
    assert not (tmp_path / "o.onnx").exists()


def test_wbits_the_model_does_not_have(binary_model, tmp_path):
    result = run(binary_model, "--wbits", "3", "-o", tmp_path / "o.onnx")
    assert result.exit_code == 1
    assert ("--wbits 3" in result.output and "1-bit" in result.output) or "binary" in result.output
    assert not (tmp_path / "o.onnx").exists()


def test_abits_the_model_does_not_have(binary_model, tmp_path):
    result = run(binary_model, "--abits", "2", "-o", tmp_path / "o.onnx")
    assert result.exit_code == 1
    assert "--abits 2" in result.output and "1-bit (BipolarQuant)" in result.output


def test_float_model_is_refused(tmp_path):
    g = GraphBuilder()
    w = g.const(np.random.default_rng(0).standard_normal((4, 4, 3, 3)).astype(np.float32))
    path = tmp_path / "float.onnx"
    onnx.save(g.model({"x": [1, 4, 6, 6]}, [g.op("Conv", ["x", w], kernel_shape=[3, 3])]), path)
    result = run(path)
    assert result.exit_code == 1
    assert "no quantized Conv/Gemm/MatMul layer" in result.output


def test_out_of_range_bits_and_unknown_option(binary_model):
    result = run(binary_model, "--wbits", "9")
    assert result.exit_code == 2 and "--wbits" in result.output
    result = run(binary_model, "--frobnicate")
    assert result.exit_code == 2 and "No such option" in result.output


def test_verify_passes_and_writes_json(binary_model, tmp_path):
    out = tmp_path / "c.onnx"
    assert run(binary_model, "-o", out).exit_code == 0
    report = tmp_path / "r.json"
    result = run("verify", binary_model, out, "--json", report)
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert data["passed"] and data["outputs"][0]["max_abs_error"] <= 1e-4 * data["outputs"][0]["max_abs_reference"]


def test_verify_names_first_divergent_node(tmp_path):
    # reference: binary conv -> BN -> Relu -> Conv(float); tamper with the compiled XnorConv's scale
    g = GraphBuilder(5)
    y = g.op("Conv", [g.bipolar("x"), g.binary_weight((8, 8, 3, 3))], name="bconv", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    y = g.op("Relu", [y], name="relu")
    w2 = g.const(np.random.default_rng(2).standard_normal((4, 8, 1, 1)).astype(np.float32))
    y = g.op("Conv", [y, w2], name="head", kernel_shape=[1, 1])
    ref_path = tmp_path / "ref.onnx"
    onnx.save(g.model({"x": [2, 8, 5, 5]}, [y]), ref_path)
    comp_path = tmp_path / "comp.onnx"
    assert run(ref_path, "-o", comp_path).exit_code == 0
    comp = onnx.load(comp_path)
    xnor = next(n for n in comp.graph.node if n.op_type == "XnorConv")
    scale = next(i for i in comp.graph.initializer if i.name == xnor.input[2])
    values = onnx.numpy_helper.to_array(scale).copy()
    values[3] *= 1.5
    scale.CopyFrom(onnx.numpy_helper.from_array(values, scale.name))
    onnx.save(comp, comp_path)
    result = run("verify", ref_path, comp_path)
    assert result.exit_code == 1
    assert "PARITY FAILED" in result.output
    assert "first divergence" in result.output and "'bconv'" in result.output


def test_verify_with_npz_inputs(binary_model, tmp_path):
    out = tmp_path / "c.onnx"
    assert run(binary_model, "-o", out).exit_code == 0
    npz = tmp_path / "x.npz"
    np.savez(npz, x=np.random.default_rng(0).standard_normal((5, 64, 8, 8)).astype(np.float32))
    result = run("verify", binary_model, out, "--inputs", npz)
    assert result.exit_code == 0, result.output
    assert "[5, 64, 8, 8]" in result.output


def test_bench_reports_ratio(binary_model, tmp_path):
    out = tmp_path / "c.onnx"
    assert run(binary_model, "-o", out).exit_code == 0
    js = tmp_path / "b.json"
    result = run("bench", out, "--vs", binary_model, "--repeats", "3", "--json", js)
    assert result.exit_code == 0, result.output
    data = json.loads(js.read_text())
    assert data["schema"] == "qcompile.bench/1" and data["cpu"] and all(k["selected"] in k["supported"] for k in data["kernels"].values())
    assert "XnorConv" in data["kernels"]
    run0 = data["runs"][0]
    assert run0["threads"] == 1 and run0["repeats"] == 3
    assert run0["speedup"] == pytest.approx(run0["reference_ms"]["median"] / run0["compiled_ms"]["median"])
    assert run0["compiled_ms"]["p10"] <= run0["compiled_ms"]["median"] <= run0["compiled_ms"]["p90"]
    assert "thread(s)" in result.output and "CPU:" in result.output


def test_a_weight_only_model_is_written_with_its_weights_folded():
    from qcompile.compiler import compile as compile_model
    from qcompile.onnx_builder import GraphBuilder

    """BWN / TWN (quantized weights, float activations): nothing to lower, but the folded model is
    exact and runs no Quant node, so compile writes it (with a note) instead of refusing."""
    g = GraphBuilder(16)
    y = g.op("Conv", ["x", g.binary_weight((8, 4, 3, 3))], name="c1", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    w2 = g.quant(g.const(g.rng.standard_normal((4, 8, 3, 3)).astype(np.float32)), 0.3, 2)
    ref = g.model({"x": [1, 4, 8, 8]}, [g.op("Conv", [g.op("Relu", [g.bn(y, 8)]), w2], name="c2", kernel_shape=[3, 3])])
    x = np.random.default_rng(0).standard_normal((1, 4, 8, 8)).astype(np.float32)
    result = compile_model(ref, parity_inputs={"x": x})
    assert result.parity.passed and [n.op_type for n in result.model.graph.node] == ["Conv", "BatchNormalization", "Relu", "Conv"]
    assert len(result.notes) == 1 and result.notes[0].startswith("weight-only model")
    assert all(row.note.startswith("stays float: input is float") for row in result.rows)
