"""End to end for multi-bit models exported by Brevitas: W2/A2, W3/A3 and binary-weight/4-bit-act."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from qcompile.cli import main
from qcompile.ops.evaluator import run as run_python
from qcompile.verify import verify

pytest.importorskip("brevitas", reason="Brevitas is a test dependency (pip install -e '.[test]')")


@pytest.mark.parametrize("wbits,abits", [(2, 2), (3, 3), (1, 4)])
def test_brevitas_multibit_compiles_and_verifies(tmp_path, wbits, abits):
    from brevitas_models import export_multibit_cnn

    ref = export_multibit_cnn(tmp_path / "ref.onnx", wbits, abits)
    out = tmp_path / "ref.q.onnx"
    # --impl bitserial: this test is about the bit-serial lowering (the cost model may pick int8)
    result = CliRunner().invoke(main, [str(ref), "--wbits", str(wbits), "--abits", str(abits), "-o", str(out),
                                       "--impl", "bitserial"])
    assert result.exit_code == 0, result.output
    assert "PARITY OK" in result.output
    ops = [n.op_type for n in onnx.load(out).graph.node]
    # the first multi-bit layer writes the second one's codes (multibit_thresholds): one QuantizePack
    assert ops.count("BitSerialConvThreshold") == 1 and ops.count("BitSerialConv") == 1
    assert ops.count("QuantizePack") == 1 and ops.count("PlaneMaxPool") == 1
    rng = np.random.default_rng(0)
    worst = 0.0
    for seed in range(8):  # the export has a fixed batch of 1
        report = verify(ref, out, seed=seed)
        assert report.passed, report.to_json()
        assert report.outputs[0].differing_top1 == 0
        worst = max(worst, report.outputs[0].rel_error)
    # BatchNorm and the scales folded into one float32 multiply-add: float rounding only
    assert worst < 1e-5
    # the pure-Python executor agrees with onnxruntime on the compiled graph
    x = rng.standard_normal((1, 1, 28, 28)).astype(np.float32)
    from qcompile.runtime import InferenceSession

    got = InferenceSession(str(out)).run(None, {"input": x})[0]
    np.testing.assert_allclose(run_python(onnx.load(out), {"input": x})[0], got, rtol=1e-5, atol=1e-5)
