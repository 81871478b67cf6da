"""End to end: a Brevitas-exported binary VGG-style CNN, compiled through the CLI, verified."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from qcompile.cli import main
from qcompile.verify import verify

pytest.importorskip("brevitas", reason="Brevitas is a test dependency (pip install -e '.[test]')")


@pytest.fixture(scope="module")
def vgg(tmp_path_factory):
    from brevitas_models import export_binary_vgg

    directory = tmp_path_factory.mktemp("vgg")
    ref = export_binary_vgg(directory / "vgg.onnx")
    out = directory / "vgg.q.onnx"
    result = CliRunner().invoke(main, [str(ref), "--wbits", "1", "--abits", "1", "-o", str(out)])
    return ref, out, result


def test_cli_compiles_and_reports_parity(vgg):
    _ref, out, result = vgg
    assert result.exit_code == 0, result.output
    assert "PARITY OK" in result.output
    ops = [n.op_type for n in onnx.load(out).graph.node]
    # binary -> binary layers exchange packed bits: one BinarizePack (after the float first conv),
    # two convs that threshold their output into bits, a packed max-pool, and a last float-out conv
    assert ops.count("BinarizePack") == 1
    assert ops.count("XnorConvThreshold") == 2 and ops.count("XnorConv") == 1
    assert "PackedMaxPool" in ops
    assert "Conv" in ops and "Gemm" in ops  # float first conv and classifier


def test_same_top1_on_every_input_and_float_rounding_error(vgg):
    ref, out, _ = vgg
    worst = 0.0
    for seed in range(24):  # the export has a fixed batch of 1: one input per seed
        report = verify(ref, out, seed=seed)
        assert report.passed, report.to_json()
        (logits,) = report.outputs
        assert logits.differing_top1 == 0
        worst = max(worst, logits.rel_error)
    # Folded BatchNorm/alpha differ from the reference only by float32 rounding (~1e-7 relative).
    assert worst < 1e-5


def test_binary_layers_are_25x_smaller(vgg):
    ref, _out, _ = vgg
    from qcompile.compiler import compile as compile_model

    result = compile_model(ref, None, wbits=1, check_parity=False)
    binary_rows = [r for r in result.rows if r.op_after.startswith("XnorConv")]
    assert len(binary_rows) == 3
    for row in binary_rows:
        assert row.bytes_before >= 25 * row.bytes_after, row


def test_real_images_same_top1(vgg):
    """Natural-looking inputs (smooth blobs), not only Gaussian noise."""
    ref, out, _ = vgg
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:28, 0:28]
    for _ in range(8):
        cy, cx, r = rng.uniform(6, 22), rng.uniform(6, 22), rng.uniform(3, 9)
        img = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r)).astype(np.float32)
        report = verify(ref, out, {"input": img[None, None]})
        assert report.passed, report.to_json()


def _binary_stack() -> onnx.ModelProto:
    """A float stem, then two binary conv+BN layers: conv1's output reaches conv2 as packed bits."""
    from graphs import GraphBuilder

    g = GraphBuilder(3)
    y = g.bn(g.op("Conv", ["x", g.const(g.rng.standard_normal((16, 3, 3, 3)).astype(np.float32), "w")],
                  name="stem", kernel_shape=[3, 3], pads=[1, 1, 1, 1]), 16)
    for name in ("conv1", "conv2"):
        y = g.bn(g.op("Conv", [g.bipolar(y), g.binary_weight((16, 16, 3, 3))], name=name, kernel_shape=[3, 3],
                      pads=[1, 1, 1, 1]), 16)
    return g.model({"x": [2, 3, 8, 8]}, [y])


def test_verify_compares_layer_by_layer_and_names_the_corrupted_one(tmp_path):
    from qcompile.compiler import compile as compile_model

    ref = _binary_stack()
    compiled = compile_model(ref, check_parity=False).model
    report = verify(ref, compiled)
    assert report.passed
    assert [(layer.layer, layer.encoding) for layer in report.layers] == [("conv1", "sign-bits"), ("conv2", "float")]
    assert all(layer.passed for layer in report.layers)
    assert report.layers[0].max_abs_error == 0  # bits: exact

    # corrupt conv1's packed weights: its bits, and everything after it, go wrong
    for init in compiled.graph.initializer:
        if init.name == "conv1/w_packed":
            words = onnx.numpy_helper.to_array(init) ^ np.uint64(0x5555555555555555)
            init.CopyFrom(onnx.numpy_helper.from_array(words, init.name))
    ref_path, bad_path = tmp_path / "ref.onnx", tmp_path / "bad.onnx"
    onnx.save(ref, ref_path)
    onnx.save(compiled, bad_path)
    report = verify(ref_path, bad_path)
    assert not report.passed
    assert report.first_divergence.layer == "conv1"
    (threshold,) = [n.name for n in compiled.graph.node if n.op_type == "XnorConvThreshold"]
    assert report.first_divergence.compiled_node == threshold
    conv1_out = next(n.output[0] for n in ref.graph.node if n.name == "conv1")
    bn1 = next(n for n in ref.graph.node if n.input and n.input[0] == conv1_out)  # what conv1's bits binarize
    assert (report.first_divergence.tensor, report.first_divergence.reference_node) == (bn1.output[0], bn1.name)
    assert not report.layers[0].passed and report.layers[0].max_abs_error > 0

    result = CliRunner().invoke(main, ["verify", str(ref_path), str(bad_path), "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 1, result.output
    assert "first divergence: layer 'conv1'" in result.output
    import json

    saved = json.loads((tmp_path / "r.json").read_text())
    assert [layer["layer"] for layer in saved["layers"]] == ["conv1", "conv2"]
    print(result.output)
