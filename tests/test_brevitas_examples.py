"""Brevitas's own example models (brevitas_examples.bnn_pynq, random weights, export_qonnx with the
TorchScript exporter) compiled by qcompile, run in onnxruntime and compared with qonnx's executor.

What is covered so far (issue 11): CNV (binary convs behind MaxPool are lowered: the grid is
propagated), and resnet18_4w4a's reference (AveragePool -> Trunc) runs in stock onnxruntime with
the library and matches qonnx's executor; its compiled model lowers every 4-bit layer."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from qcompile import runtime
from qcompile.compiler import compile as compile_model

pytest.importorskip("brevitas_examples")
pytest.importorskip("qonnx")


def _export(name: str, path) -> tuple[str, np.ndarray]:
    from brevitas.export import export_qonnx
    from brevitas_examples.bnn_pynq import models

    torch.manual_seed(0)
    model = getattr(models, name)(pretrained=False).eval()
    for m in model.modules():  # non-degenerate BatchNorm statistics, as after training
        if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.1)
    shape = (1, 3, 32, 32) if name.startswith(("cnv", "resnet")) else (1, 1, 28, 28)
    x = torch.rand(shape) * 2 - 1
    with torch.no_grad():
        export_qonnx(model, x, export_path=str(path), dynamo=False)
    return str(path), x.numpy()


def _qonnx_run(path: str, x: np.ndarray) -> np.ndarray:
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.util.cleanup import cleanup_model

    wrapper = cleanup_model(ModelWrapper(path))  # qonnx's executor wants every shape inferred
    out = execute_onnx(wrapper, {wrapper.graph.input[0].name: x})
    return out[wrapper.graph.output[0].name]


def _ort_run(model, x: np.ndarray) -> np.ndarray:
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else onnx.load(model).SerializeToString()
    sess = ort.InferenceSession(data, runtime.session_options(threads=1), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


@pytest.fixture(scope="session")
def exports(tmp_path_factory):
    cache: dict[str, tuple[str, np.ndarray]] = {}

    def get(name: str):
        if name not in cache:
            cache[name] = _export(name, tmp_path_factory.mktemp(name) / f"{name}.onnx")
        return cache[name]

    return get


@pytest.mark.parametrize("name", ["cnv_1w1a", "cnv_2w2a"])
def test_cnv_every_conv_lowered_and_matches_qonnx(exports, name):
    path, x = exports(name)
    result = compile_model(path, None)
    assert result.parity is not None and result.parity.passed
    convs = [r for r in result.rows if r.op_before == "Conv"]
    float_convs = [r.name for r in convs if r.op_after == "Conv"]
    assert not float_convs, float_convs  # the two behind a MaxPool included
    ours, theirs = _ort_run(result.model, x), _qonnx_run(path, x)
    assert ours.argmax(-1).tolist() == theirs.argmax(-1).tolist()
    # float parts (BatchNorm folded into the per-channel scale) differ by float rounding only
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5 * float(np.abs(theirs).max()))


def test_resnet18_reference_with_trunc_runs_in_ort_and_matches_qonnx(exports):
    path, x = exports("resnet18_4w4a")
    assert any(n.op_type == "Trunc" for n in onnx.load(path).graph.node)
    ours, theirs = _ort_run(path, x), _qonnx_run(path, x)
    # the same float32 ops in the same order (the Trunc kernel is bit-exact with qonnx's numpy)
    np.testing.assert_array_equal(ours, theirs)


def test_resnet18_lowers_every_4bit_layer(exports):
    path, _ = exports("resnet18_4w4a")
    result = compile_model(path, None, check_parity=False)
    lowered = {r.name: r.op_after for r in result.rows}
    body = [n for n in lowered if n != "/conv1/Conv"]  # the first conv reads the float input
    # the 8-bit classifier takes int8 arithmetic (MatMulInteger), not 8 bit planes
    assert all(lowered[n].startswith(("BitSerial", "Xnor", "Shift", "ConvInteger", "MatMulInteger")) for n in body), lowered
    assert lowered["/linear/Gemm"] == "MatMulInteger"
