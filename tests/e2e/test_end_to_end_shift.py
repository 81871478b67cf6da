"""End to end for SHIFT: the project's trainer with AQE at W3/A3 (power-of-two weights and
activations), exported, compiled through the CLI to ShiftConv / ShiftGemm, and verified."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner

from qcompile.cli import main
from qcompile.train import train
from qcompile.verify import verify


@pytest.fixture(scope="module")
def aqe33(tmp_path_factory):
    directory = tmp_path_factory.mktemp("aqe33")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        r = train(model="convnet", data="digits", method="aqe", wbits=3, abits=3, epochs=2, batch_size=32,
                  width=0.5, progress=False, seed=0, aqe_anneal_to=1.0, out=str(directory / "run"))
    finally:
        torch.set_num_threads(threads)
    out = directory / "aqe33.q.onnx"
    # --impl shift: this test is about the SHIFT lowering (the cost model may pick int8 or float)
    result = CliRunner().invoke(main, [str(r.onnx_path), "--wbits", "3", "--abits", "3", "-o", str(out),
                                       "--impl", "shift"])
    return r, out, result


def test_trained_aqe_w3a3_compiles_to_shift_ops(aqe33):
    r, out, result = aqe33
    assert r.test_acc > 0.5  # it learned something: the comparison below is about a real model
    assert result.exit_code == 0, result.output
    assert "PARITY OK" in result.output
    ops = [n.op_type for n in onnx.load(out).graph.node]
    # the 5 quantized convs and 2 quantized dense layers; first conv and classifier stay float
    assert ops.count("ShiftConv") == 5 and ops.count("ShiftGemm") == 2, ops
    assert "Pow2Quant" in ops  # the classifier's (float) input quantizer stays
    assert ops.count("Conv") == 1 and ops.count("Gemm") == 1


def test_trained_aqe_w3a3_same_top1_float_rounding_error(aqe33):
    r, out, _ = aqe33
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 1, 8, 8)).astype(np.float32)
    report = verify(r.onnx_path, out, {"input": x})
    assert report.passed, report.to_json()
    (logits,) = report.outputs
    assert logits.differing_top1 == 0
    # the integer parts are exact; BN and the scales folded into one multiply-add per channel
    assert logits.rel_error < 1e-5
