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
